"""Bad input over a raw socket: each case gets Kafka's error code or a closed
connection, nothing is written, the broker stays up, and other connections (an open
librdkafka producer, a new consumer) carry on as if nothing happened."""

import socket
import time

import pytest

import kwire
from kafka_util import consume, create_topic, producer, unique, watermarks

CORRUPT_MESSAGE = 2
UNSUPPORTED_VERSION = 35
INVALID_RECORD = 87


@pytest.fixture
def bystander(broker):
    """A producer connected before the bad input, used again after it."""
    topic = unique("bystander")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    p.produce(topic, key=b"before", value=b"before")
    assert p.flush(30) == 0
    yield p, topic
    # after the bad input: the same producer, then a fresh consumer
    p.produce(topic, key=b"after", value=b"after")
    assert p.flush(30) == 0
    got = consume(broker.bootstrap, topic)
    assert [(r.offset, r.value) for r in got] == [(0, b"before"), (1, b"after")]
    assert broker.alive(), f"broker died:\n{broker.log_tail()}"


def supported(broker) -> dict[int, tuple[int, int]]:
    with kwire.Conn(broker.bootstrap) as conn:
        conn.send(kwire.api_versions_request(3, 1))
        corr, body = conn.recv_frame()
    assert corr == 1
    error, apis = kwire.parse_api_versions_v3(body)
    assert error == 0
    return apis


def test_api_versions_v0_and_v3(broker):
    with kwire.Conn(broker.bootstrap) as conn:
        conn.send(kwire.api_versions_request(0, 11))
        corr, body = conn.recv_frame()
        assert corr == 11
        error, apis_v0 = kwire.parse_api_versions_v0(body)
        assert error == 0
        conn.send(kwire.api_versions_request(3, 12))
        corr, body = conn.recv_frame()
        assert corr == 12
        error, apis_v3 = kwire.parse_api_versions_v3(body)
        assert error == 0
    assert apis_v0 == apis_v3
    for key in (0, 1, 2, 3, 18, 19, 20, 32, 44, 60):  # produce fetch listoffsets metadata ...
        assert key in apis_v3, f"api {key} not advertised: {sorted(apis_v3)}"
    assert apis_v3[18][1] >= 3


def test_oversized_frame_closes_connection(broker, bystander):
    with kwire.Conn(broker.bootstrap) as conn:
        conn.send(b"\x7f\xff\xff\xff" + b"\x00" * 64)
        assert conn.wait_closed(), "connection left open after a 2 GiB frame size"
    with kwire.Conn(broker.bootstrap) as conn:  # a negative size too
        conn.send(b"\xff\xff\xff\xf0" + b"\x00" * 16)
        assert conn.wait_closed(), "connection left open after a negative frame size"


def test_truncated_frame_then_close(broker, bystander):
    for cut in (2, 10, 60):
        with kwire.Conn(broker.bootstrap) as conn:
            full = kwire.api_versions_request(3, 5)
            conn.send(kwire.i32(100) + full[4:4 + cut])  # promises 100 bytes, sends fewer
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.wait_closed()
    # and a connection that just stalls mid-frame does not block anyone else
    stalled = kwire.Conn(broker.bootstrap)
    stalled.send(kwire.i32(1000) + b"\x00\x12")
    try:
        assert supported(broker)
    finally:
        stalled.close()


def test_unknown_api_key(broker, bystander):
    with kwire.Conn(broker.bootstrap) as conn:
        payload = kwire.i16(9999) + kwire.i16(0) + kwire.i32(77) + kwire.string("x")
        conn.send(kwire.frame(payload))
        conn.sock.settimeout(15)
        try:
            corr, _body = conn.recv_frame()
        except (kwire.Closed, ConnectionResetError):
            return  # what Kafka does: close the connection
        except socket.timeout:
            pytest.fail("no answer and no close for api key 9999")
        assert corr == 77, "an answer, if any, must carry the request's correlation id"


def test_api_versions_with_unsupported_version(broker, bystander):
    with kwire.Conn(broker.bootstrap) as conn:
        conn.send(kwire.frame(kwire.header_v2(kwire.API_VERSIONS, 99, 42)
                              + kwire.compact_string("x") + kwire.compact_string("1")
                              + kwire.TAGS_NONE))
        corr, body = conn.recv_frame()
        assert corr == 42
        error, apis = kwire.parse_api_versions_v0(body)  # answered in v0, as Kafka does
        assert error == UNSUPPORTED_VERSION
        assert kwire.API_VERSIONS in apis, f"supported versions not listed: {apis}"
        assert apis[kwire.API_VERSIONS][1] >= 3
        # the connection stays usable: the client retries with a version it can use
        conn.send(kwire.api_versions_request(3, 43))
        corr, body = conn.recv_frame()
        assert corr == 43 and kwire.parse_api_versions_v3(body)[0] == 0


def produce_raw(broker, version: int, topic: str, batch: bytes, corr: int):
    with kwire.Conn(broker.bootstrap) as conn:
        conn.send(kwire.produce_request(version, corr, topic, 0, batch))
        try:
            got_corr, body = conn.recv_frame()
        except kwire.Closed:
            return None  # closing the connection is also allowed for bad batches
    if version >= 9:
        r = kwire.Reader(body)
        r.tags()  # response header v1
        body = body[r.pos:]
    assert got_corr == corr
    [(name, partition, error, base)] = kwire.parse_produce(version, body)
    assert (name, partition) == (topic, 0)
    return error, base


def versions_to_try(broker):
    lo, hi = supported(broker)[0]
    return [v for v in (3, 9) if lo <= v <= hi]


def test_valid_hand_built_produce_is_accepted(broker):
    """The control for the cases below: the same frames, unbroken, are accepted."""
    for version in versions_to_try(broker):
        topic = unique(f"raw-ok-v{version}")
        create_topic(broker.bootstrap, topic)
        batch = kwire.record_batch([(b"k0", b"v0"), (None, b"v1"), (b"k2", None)])
        assert produce_raw(broker, version, topic, batch, 5) == (0, 0)
        got = consume(broker.bootstrap, topic)
        assert [(r.offset, r.key, r.value) for r in got] == [
            (0, b"k0", b"v0"), (1, None, b"v1"), (2, b"k2", None)]


@pytest.mark.parametrize("damage", ["crc", "record-count-high", "record-count-low"])
def test_corrupt_batch_is_refused_and_not_written(broker, bystander, damage):
    for version in versions_to_try(broker):
        topic = unique(f"raw-bad-v{version}")
        create_topic(broker.bootstrap, topic)
        recs = [(b"k%d" % i, b"v%d" % i) for i in range(5)]
        if damage == "crc":
            batch = kwire.record_batch(recs, corrupt_crc=True)
        elif damage == "record-count-high":
            batch = kwire.record_batch(recs, count_override=9)
        else:
            batch = kwire.record_batch(recs, count_override=2)
        result = produce_raw(broker, version, topic, batch, 9)
        if result is not None:
            error, _ = result
            allowed = {CORRUPT_MESSAGE} if damage == "crc" else {CORRUPT_MESSAGE, INVALID_RECORD}
            assert error in allowed, f"v{version} {damage}: error code {error}"
        time.sleep(0.2)
        assert watermarks(broker.bootstrap, topic) == (0, 0), "a refused batch was written"
        assert consume(broker.bootstrap, topic) == []


def test_garbage_then_good_on_many_connections(broker, bystander):
    """A burst of junk frames on parallel connections leaves the broker serving."""
    conns = []
    for i in range(20):
        c = kwire.Conn(broker.bootstrap)
        c.send(kwire.i32(12) + bytes([i]) * 12)
        conns.append(c)
    for c in conns:
        c.wait_closed(timeout=5)
        c.close()
    assert supported(broker)
