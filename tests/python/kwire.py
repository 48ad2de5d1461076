"""Hand-built Kafka wire frames for the malformed-input tests: just enough of the
protocol (ApiVersions v0/v3, Produce v3/v9, record batch v2 with CRC-32C) to send valid
requests and then break them on purpose. Written from the protocol spec."""

from __future__ import annotations

import socket
import struct
import time

# --- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven ---------------

_CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- primitive encoders ----------------------------------------------------------------


def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)
def u32(v): return struct.pack(">I", v)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (also used for varlong)."""
    return uvarint((v << 1) ^ (v >> 63))


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def nbytes(b: bytes | None) -> bytes:
    return i32(-1) if b is None else i32(len(b)) + b


def compact_bytes(b: bytes | None) -> bytes:
    return uvarint(0) if b is None else uvarint(len(b) + 1) + b


TAGS_NONE = uvarint(0)


# --- record batch v2 --------------------------------------------------------------------


def record(offset_delta: int, ts_delta: int, key: bytes | None, value: bytes | None,
           headers: list[tuple[str, bytes | None]] = ()) -> bytes:
    body = bytearray()
    body += i8(0)  # attributes
    body += varint(ts_delta)
    body += varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        kb = hk.encode()
        body += varint(len(kb)) + kb
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def record_batch(records: list[tuple[bytes | None, bytes | None]], base_timestamp: int | None = None,
                 count_override: int | None = None, corrupt_crc: bool = False) -> bytes:
    """An uncompressed magic-v2 batch at base offset 0 (the broker assigns offsets).
    count_override writes a wrong record count (with a CRC valid for those bytes);
    corrupt_crc flips the stored CRC."""
    ts = int(time.time() * 1000) if base_timestamp is None else base_timestamp
    recs = b"".join(record(i, 0, k, v) for i, (k, v) in enumerate(records))
    count = len(records) if count_override is None else count_override
    after_crc = (i16(0)                      # attributes: no compression, create time
                 + i32(len(records) - 1)      # last offset delta
                 + i64(ts) + i64(ts)          # base / max timestamp
                 + i64(-1) + i16(-1) + i32(-1)  # producer id / epoch / base sequence
                 + i32(count) + recs)
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    after_length = i32(-1) + i8(2) + u32(crc) + after_crc  # leader epoch, magic, crc
    return i64(0) + i32(len(after_length)) + after_length


# --- requests ---------------------------------------------------------------------------

API_PRODUCE = 0
API_VERSIONS = 18
CLIENT_ID = "strata-e2e-raw"


def header_v1(api_key: int, version: int, correlation_id: int) -> bytes:
    return i16(api_key) + i16(version) + i32(correlation_id) + string(CLIENT_ID)


def header_v2(api_key: int, version: int, correlation_id: int) -> bytes:
    return header_v1(api_key, version, correlation_id) + TAGS_NONE


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def api_versions_request(version: int, correlation_id: int) -> bytes:
    if version >= 3:
        body = compact_string("strata-e2e") + compact_string("1.0") + TAGS_NONE
        return frame(header_v2(API_VERSIONS, version, correlation_id) + body)
    return frame(header_v1(API_VERSIONS, version, correlation_id))


def produce_request(version: int, correlation_id: int, topic: str, partition: int,
                    batch: bytes, acks: int = -1, timeout_ms: int = 10000) -> bytes:
    if version >= 9:  # flexible
        part = i32(partition) + compact_bytes(batch) + TAGS_NONE
        topic_data = compact_string(topic) + uvarint(2) + part + TAGS_NONE
        body = (compact_string(None) + i16(acks) + i32(timeout_ms)
                + uvarint(2) + topic_data + TAGS_NONE)
        return frame(header_v2(API_PRODUCE, version, correlation_id) + body)
    if version < 3:
        raise ValueError("produce v3+ only (record batch v2)")
    part = i32(partition) + nbytes(batch)
    topic_data = string(topic) + i32(1) + part
    body = string(None) + i16(acks) + i32(timeout_ms) + i32(1) + topic_data
    return frame(header_v1(API_PRODUCE, version, correlation_id) + body)


# --- response decoding -------------------------------------------------------------------


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response too short: need {n} bytes at {self.pos} of {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def rest(self) -> int:
        return len(self.data) - self.pos


def parse_api_versions_v0(body: bytes) -> tuple[int, dict[int, tuple[int, int]]]:
    """v0 body (what Kafka sends back for an unsupported ApiVersions version)."""
    r = Reader(body)
    error = r.i16()
    apis = {}
    for _ in range(r.i32()):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        apis[key] = (lo, hi)
    return error, apis


def parse_api_versions_v3(body: bytes) -> tuple[int, dict[int, tuple[int, int]]]:
    r = Reader(body)
    error = r.i16()
    apis = {}
    for _ in range(r.uvarint() - 1):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        r.tags()
        apis[key] = (lo, hi)
    return error, apis


def parse_produce(version: int, body: bytes) -> list[tuple[str, int, int, int]]:
    """[(topic, partition, error_code, base_offset)]. The body starts after the
    correlation id (and, for v9+, the response header's tagged fields)."""
    r = Reader(body)
    out = []
    flexible = version >= 9
    n_topics = r.uvarint() - 1 if flexible else r.i32()
    for _ in range(n_topics):
        name = r.compact_string() if flexible else r.string()
        n_parts = r.uvarint() - 1 if flexible else r.i32()
        for _ in range(n_parts):
            index, error, base = r.i32(), r.i16(), r.i64()
            r.i64()  # log append time
            if version >= 5:
                r.i64()  # log start offset
            if version >= 8:
                n_errs = r.uvarint() - 1 if flexible else r.i32()
                for _ in range(max(n_errs, 0)):
                    r.i32()
                    r.compact_string() if flexible else r.string()
                    if flexible:
                        r.tags()
                r.compact_string() if flexible else r.string()
            if flexible:
                r.tags()
            out.append((name, index, error, base))
        if flexible:
            r.tags()
    return out


# --- a connection --------------------------------------------------------------------------


class Closed(Exception):
    """The broker closed the connection."""


class Conn:
    def __init__(self, bootstrap: str, timeout: float = 15.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError as e:
                raise Closed(str(e)) from e
            if not chunk:
                raise Closed(f"closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> tuple[int, bytes]:
        """(correlation id, rest of the frame)."""
        size = struct.unpack(">i", self._recv_exact(4))[0]
        payload = self._recv_exact(size)
        return struct.unpack(">i", payload[:4])[0], payload[4:]

    def wait_closed(self, timeout: float = 15.0) -> bool:
        """True if the broker closes the connection within `timeout` (any bytes it sends
        first are drained and ignored)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
