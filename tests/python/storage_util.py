"""Helpers for the storage, recovery and retention tests: which store a broker runs on,
how to fill a topic with sealed segments, how to read those segments as Parquet."""

from __future__ import annotations

import io
import re

from kafka_util import Rec, create_topic, produce, wait_until

SEGMENT_RE = re.compile(r"^(\d{20})\.parquet$")


def segment_keys(broker, topic: str, partition: int = 0) -> list[tuple[int, str]]:
    """[(base offset, key)] of the sealed Parquet segments of one partition, in order."""
    out = []
    for key in broker.objects.keys(f"topics/{topic}/{partition}/"):
        m = SEGMENT_RE.match(key.rsplit("/", 1)[-1])
        if m:
            out.append((int(m.group(1)), key))
    return sorted(out)


def wal_keys(broker) -> list[str]:
    return broker.objects.keys("wal/")


def sample_records(n: int, start: int = 0, value_size: int = 120):
    """Varied records: some null keys/values, headers of several shapes."""
    out = []
    for i in range(start, start + n):
        key = None if i % 17 == 0 else f"key-{i % 101}".encode()
        value = None if i % 29 == 5 else (f"value-{i}-".encode() + bytes([i % 251]) * (
            value_size + i % 50))
        headers = [("seq", str(i).encode())]
        if i % 3 == 0:
            headers.append(("bin", bytes(range(i % 7, i % 7 + 5))))
        if i % 11 == 0:
            headers.append(("nullable", None))
        out.append((key, value, headers))
    return out


def fill_with_sealed_segments(broker, topic: str, n: int = 4000, min_segments: int = 3,
                              segment_bytes: int = 65536, extra_config=None) -> list[Rec]:
    """Creates `topic` with a small segment.bytes, produces n records (acks=all) and
    waits until at least `min_segments` sealed Parquet segments are in the store."""
    config = {"segment.bytes": str(segment_bytes)}
    config.update(extra_config or {})
    create_topic(broker.bootstrap, topic, config=config)
    # small batches: a batch is never split, so a segment holds whole batches
    acked = produce(broker.bootstrap, topic, sample_records(n), acks="all",
                    batch_num_messages=100, linger_ms=2)
    wait_until(lambda: len(segment_keys(broker, topic)) >= min_segments, 60,
               what=f">= {min_segments} sealed segments of {topic} in "
                    f"{broker.objects.describe()} (have {segment_keys(broker, topic)})")
    return acked


def read_segment(broker, key: str):
    """(pyarrow Table, the file's key-value metadata as a str dict)."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(io.BytesIO(broker.objects.read(key)))
    meta = {k.decode(): v.decode(errors="replace")
            for k, v in (f.metadata.metadata or {}).items() if k != b"ARROW:schema"}
    return f.read(), meta


def segment_records(table) -> list[Rec]:
    """A Parquet segment's rows as records (DESIGN.md's schema)."""
    import pyarrow as pa

    offsets = table.column("offset").to_pylist()
    keys = table.column("key").to_pylist()
    values = table.column("value").to_pylist()
    headers = table.column("headers").to_pylist()
    ts_col = table.column("timestamp")
    if pa.types.is_timestamp(ts_col.type):
        ts_col = ts_col.cast(pa.timestamp("ms")).cast(pa.int64())
    stamps = ts_col.to_pylist()
    out = []
    for off, k, v, hs, ts in zip(offsets, keys, values, headers, stamps):
        hs = [(h["key"], h["value"]) for h in (hs or [])]
        out.append(Rec(off, k, v, hs, ts))
    return out
