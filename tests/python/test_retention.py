"""Retention deletes whole sealed segments (their objects and the offsets they held), and
DeleteRecords moves a partition's log start offset."""

import os
import time

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from kafka_util import admin, assert_same, consume, unique, wait_until, watermarks
from storage_util import fill_with_sealed_segments, read_segment, segment_keys

# How long retention may take to act; Strata's check interval is its own business.
RETENTION_WAIT_S = float(os.environ.get("STRATA_RETENTION_WAIT", "150"))


def earliest(broker, topic: str, partition: int = 0) -> int:
    tp = TopicPartition(topic, partition)
    client = admin(broker.bootstrap)
    return client.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=30)[tp].result(30).offset


def settled_earliest(broker, topic: str, quiet_s: float = 12) -> int:
    """The earliest offset once retention has stopped moving it for `quiet_s` seconds
    (sealing may lag producing, and each new segment can push older ones out)."""
    import time

    last, since = earliest(broker, topic), time.monotonic()
    deadline = since + RETENTION_WAIT_S
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "earliest offset never settled"
        time.sleep(1)
        now = earliest(broker, topic)
        if now != last:
            last, since = now, time.monotonic()
    return last


def set_topic_configs(broker, topic: str, configs: dict) -> None:
    """Sets topic configs the way kafka-configs --alter does (IncrementalAlterConfigs)."""
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
               for k, v in configs.items()]
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    client = admin(broker.bootstrap)
    for fut in client.incremental_alter_configs([res]).values():
        fut.result(30)


def assert_offset_out_of_range(broker, topic: str, offset: int) -> None:
    with pytest.raises(KafkaException):
        consume(broker.bootstrap, topic, start=offset, count=1, timeout=20)


def last_sealed_offset(broker, topic: str) -> int:
    keys = segment_keys(broker, topic)
    if not keys:
        return -1
    table, _ = read_segment(broker, keys[-1][1])
    return max(table.column("offset").to_pylist())


@pytest.mark.timeout(RETENTION_WAIT_S + 180)
def test_retention_bytes_deletes_oldest_segments(strata, store):
    broker = strata(s3=store)
    topic = unique("ret-bytes")
    acked = fill_with_sealed_segments(broker, topic, n=6000, min_segments=5,
                                      extra_config={"retention.ms": "-1"})
    # Seal the tail too, so the log's size is exactly its segments' and which of them
    # retention keeps is known in advance.
    set_topic_configs(broker, topic, {"segment.ms": "500"})
    wait_until(lambda: last_sealed_offset(broker, topic) == len(acked) - 1, 60,
               what=f"the whole of {topic} sealed")
    sealed = segment_keys(broker, topic)
    sizes = [len(broker.objects.read(key)) for _, key in sealed]
    # Half of what the segments take in the store (their Parquet files, which is what
    # retention.bytes counts), so the oldest must go whatever the compression.
    limit = sum(sizes) // 2
    # Kafka's rule: the oldest segment goes while the log without it still holds at
    # least retention.bytes.
    kept, total = 0, sum(sizes)
    while total - sizes[kept] >= limit:
        total -= sizes[kept]
        kept += 1
    expected = sealed[kept:]
    assert 0 < kept < len(sealed)
    set_topic_configs(broker, topic, {"retention.bytes": str(limit)})

    first_key = sealed[0][1]
    wait_until(lambda: first_key not in broker.objects.keys(f"topics/{topic}/0/"),
               RETENTION_WAIT_S, interval=1,
               what=f"{first_key} deleted by retention.bytes")
    start = settled_earliest(broker, topic)
    remaining = segment_keys(broker, topic)
    assert remaining == expected, (
        f"retention.bytes={limit} over segments of {sizes} bytes kept {remaining}")
    assert sum(len(broker.objects.read(key)) for _, key in remaining) >= limit
    assert start == expected[0][0], (
        f"earliest offset {start} is not the base offset of the oldest kept segment "
        f"{expected[0]}")
    # what is left is read as before; what is gone is out of range
    assert_same(consume(broker.bootstrap, topic, start=start), acked[start:])
    assert_offset_out_of_range(broker, topic, 0)
    assert watermarks(broker.bootstrap, topic) == (start, len(acked))


@pytest.mark.timeout(RETENTION_WAIT_S + 180)
def test_retention_ms_deletes_old_segments(strata, store):
    broker = strata(s3=store)
    topic = unique("ret-ms")
    acked = fill_with_sealed_segments(broker, topic, n=4000, min_segments=3,
                                      extra_config={"retention.bytes": "-1"})
    sealed_before = segment_keys(broker, topic)
    time.sleep(3.5)
    set_topic_configs(broker, topic, {"retention.ms": "3000"})
    wait_until(lambda: earliest(broker, topic) >= sealed_before[-1][0], RETENTION_WAIT_S,
               interval=1, what="earliest offset past the segments sealed before")
    gone = {key for _, key in sealed_before[:-1]}
    still = set(broker.objects.keys(f"topics/{topic}/0/"))
    assert not gone & still, f"segments past retention.ms still in the store: {gone & still}"
    start = settled_earliest(broker, topic)
    assert_same(consume(broker.bootstrap, topic, start=start), acked[start:])


def test_delete_records_moves_log_start_offset(strata):
    broker = strata()
    topic = unique("delete-records")
    from kafka_util import create_topic, produce
    create_topic(broker.bootstrap, topic)
    acked = produce(broker.bootstrap, topic, [(b"k", b"v%d" % i) for i in range(100)])

    client = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0, 40)
    result = client.delete_records([tp], request_timeout=30)
    deleted = next(iter(result.values())).result(30)
    assert deleted.low_watermark == 40
    assert earliest(broker, topic) == 40
    assert watermarks(broker.bootstrap, topic) == (40, 100)
    assert_same(consume(broker.bootstrap, topic, start=40), acked[40:])
    assert_offset_out_of_range(broker, topic, 10)

    # it survives a restart, and cannot move backwards
    broker.restart()
    assert earliest(broker, topic) == 40
    client = admin(broker.bootstrap)
    deleted = next(iter(client.delete_records([TopicPartition(topic, 0, 20)],
                                              request_timeout=30).values())).result(30)
    assert deleted.low_watermark == 40
    # past the high watermark is refused
    with pytest.raises(KafkaException):
        next(iter(client.delete_records([TopicPartition(topic, 0, 500)],
                                        request_timeout=30).values())).result(30)
