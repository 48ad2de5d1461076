"""1,000,000 records through confluent-kafka and back, compared record by record."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from kafka_util import consumer, create_topic, unique

N = 1_000_000


def key_of(i: int) -> bytes:
    return b"key-%07d" % (i % 50_000)


def value_of(i: int) -> bytes:
    # 60-100 bytes, different per record, mildly compressible
    return b"value-%07d-" % i + b"abcdefghij" * (5 + i % 5)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_million_records_round_trip(broker):
    topic = unique("million")
    create_topic(broker.bootstrap, topic)

    started = time.monotonic()
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 1_000_000, "batch.num.messages": 10_000,
                  "queue.buffering.max.messages": 500_000,
                  "message.timeout.ms": 300_000})
    offsets = bytearray(N)  # 1 per acknowledged record, checked below
    errors = []
    bad_offset = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
            return
        off = msg.offset()
        # offsets come back in send order on one partition: offset i belongs to record i
        if off < 0 or off >= N or msg.value() != value_of(off):
            bad_offset.append((off, msg.value()[:20]))
            return
        offsets[off] = 1

    for i in range(N):
        while True:
            try:
                p.produce(topic, key=key_of(i), value=value_of(i), partition=0,
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(300) == 0, "records left unacknowledged"
    produced_s = time.monotonic() - started
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"
    assert not bad_offset, f"records acknowledged at unexpected offsets: {bad_offset[:5]}"
    assert offsets.count(1) == N

    started = time.monotonic()
    c = consumer(broker.bootstrap, fetch_max_bytes=50 * 1024 * 1024)
    c.assign([TopicPartition(topic, 0, 0)])
    expected = 0
    deadline = time.monotonic() + 600
    try:
        while expected < N:
            assert time.monotonic() < deadline, f"timed out after {expected} records"
            for msg in c.consume(num_messages=50_000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                off = msg.offset()
                if off != expected or msg.key() != key_of(off) or msg.value() != value_of(off):
                    raise AssertionError(
                        f"record {expected}: got offset {off} key {msg.key()!r} "
                        f"value {msg.value()[:40]!r}")
                expected += 1
    finally:
        c.close()
    consumed_s = time.monotonic() - started
    print(f"\n1M records: produced in {produced_s:.1f}s, consumed in {consumed_s:.1f}s")
