"""Recovery: kill -9 the broker, throw its cache away (keep its metadata), restart it:
every record acknowledged with acks=all is served byte for byte at the same offset."""

import os

import pytest

from kafka_util import assert_same, consume, create_topic, produce, unique, watermarks
from storage_util import sample_records, segment_keys, wal_keys

PARTITIONS = 3


@pytest.mark.parametrize("layout", ["wal-only", "sealed-and-wal"])
def test_acknowledged_records_survive_kill9_and_lost_cache(strata, store, layout):
    broker = strata(s3=store)
    topic = unique(f"recover-{layout}")
    segment_bytes = 1 << 30 if layout == "wal-only" else 65536
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS,
                 config={"segment.bytes": str(segment_bytes)})

    # three producers: plain, compressed, and keyed across partitions
    acked = produce(broker.bootstrap, topic, sample_records(3000), acks="all")
    acked += produce(broker.bootstrap, topic, sample_records(3000, start=3000), acks="all",
                     compression_type="zstd", linger_ms=10)
    acked += produce(broker.bootstrap, topic,
                     [(b"p%d" % (i % PARTITIONS), b"explicit-%d" % i) for i in range(300)],
                     acks="all", partition=None)
    # one request whose batches are both above and below the size from which a WAL
    # object shares a batch's bytes instead of copying them
    acked += produce(broker.bootstrap, topic,
                     [(b"p%d" % (i % PARTITIONS),
                       os.urandom(40_000) if i % PARTITIONS == 0 else b"small-%d" % i)
                      for i in range(30)],
                     acks="all", partition=None, linger_ms=50)
    for p in range(PARTITIONS):
        extra = produce(broker.bootstrap, topic, [(None, b"last-in-%d" % p)], acks="all",
                        partition=p)
        acked += extra

    wal = wal_keys(broker)
    assert wal, f"no WAL objects in {broker.objects.describe()}"
    sealed = {p: segment_keys(broker, topic, p) for p in range(PARTITIONS)}
    if layout == "wal-only":
        assert all(not s for s in sealed.values()), f"unexpected sealed segments: {sealed}"

    broker.kill9()
    assert broker.meta_dir.exists(), "the metadata dir must be kept"
    broker.drop_cache()
    broker.start()

    for p in range(PARTITIONS):
        want = sorted((r for r in acked if r.partition == p), key=lambda r: r.offset)
        assert [r.offset for r in want] == list(range(len(want))), "offsets acked with gaps"
        assert watermarks(broker.bootstrap, topic, p) == (0, len(want)), f"partition {p}"
        assert_same(consume(broker.bootstrap, topic, p), want)

    # the restarted broker continues each partition where it ended
    for p in range(PARTITIONS):
        n = sum(1 for r in acked if r.partition == p)
        after = produce(broker.bootstrap, topic, [(b"after", b"restart")], partition=p)
        assert after[0].offset == n
        assert consume(broker.bootstrap, topic, p, start=n)[0].value == b"restart"


def test_records_acked_just_before_kill9_survive(strata, store):
    """Kill right after the last ack: nothing acknowledged may be lost, even if the
    broker had no quiet moment to flush more or seal."""
    broker = strata(s3=store)
    topic = unique("recover-abrupt")
    create_topic(broker.bootstrap, topic)
    acked = []
    for round_ in range(5):
        acked += produce(broker.bootstrap, topic, sample_records(200, start=round_ * 200),
                         acks="all")
    broker.kill9()
    broker.drop_cache()
    broker.start()
    assert_same(consume(broker.bootstrap, topic), acked)


def test_sigterm_flushes_acks1_records(strata, store):
    """acks=1 is answered before the WAL write; a clean shutdown (SIGTERM) must still
    write what is pending, so a restart serves it."""
    broker = strata(s3=store, wal_flush_ms=1000)  # a long flush interval: pending on TERM
    topic = unique("sigterm")
    create_topic(broker.bootstrap, topic)
    acked = produce(broker.bootstrap, topic, sample_records(300), acks="1")
    code = broker.stop()
    assert code == 0, f"SIGTERM shutdown exited with {code}"
    broker.drop_cache()
    broker.start()
    assert_same(consume(broker.bootstrap, topic), acked)


def test_object_store_outage_never_acks_falsely(strata, s3s_fs):
    """While the bucket is unreachable acks=all producers wait or get retriable errors,
    never an ack for a record that is not stored; when it is back, everything resumes."""
    import time

    from kafka_util import producer

    broker = strata(s3=s3s_fs)
    topic = unique("outage")
    create_topic(broker.bootstrap, topic)
    before = produce(broker.bootstrap, topic, sample_records(100), acks="all")

    s3s_fs.stop()
    p = producer(broker.bootstrap, acks="all", enable_idempotence=True,
                 message_timeout_ms=120_000)
    acked, errors = [], []

    def on_delivery(err, msg):
        (errors if err else acked).append((err, msg.offset(), msg.value()))

    during = sample_records(50, start=100)
    for key, value, headers in during:
        p.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        p.poll(0.2)
    assert not acked, f"{len(acked)} records acknowledged while the store was down"
    assert broker.alive(), f"broker died when the store went away:\n{broker.log_tail()}"

    s3s_fs.start()  # same port, same files
    assert p.flush(120) == 0
    assert not errors, f"delivery errors after the store came back: {errors[:3]}"
    assert sorted(off for _, off, _ in acked) == list(range(100, 150))
    got = consume(broker.bootstrap, topic)
    assert [(r.offset, r.key, r.value) for r in got] == (
        [(r.offset, r.key, r.value) for r in before]
        + [(100 + i, k, v) for i, (k, v, _) in enumerate(during)])
