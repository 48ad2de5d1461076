"""confluent-kafka (librdkafka) producers, consumers and admin client against Strata on
its local store."""

import time
from collections import defaultdict

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, OffsetSpec, ResourceType)

from kafka_util import (Rec, admin, assert_same, consume, create_topic, produce,
                        unique, wait_until, watermarks)

T = 60


def test_keys_land_on_one_partition_each(broker):
    topic = unique("keys")
    create_topic(broker.bootstrap, topic, partitions=6)
    keys = [f"customer-{k}".encode() for k in range(24)]
    records = [(keys[i % len(keys)], f"event-{i}".encode()) for i in range(1200)]
    acked = produce(broker.bootstrap, topic, records)

    partition_of = defaultdict(set)
    for r in acked:
        partition_of[r.key].add(r.partition)
    assert all(len(p) == 1 for p in partition_of.values()), dict(partition_of)
    assert len({p for ps in partition_of.values() for p in ps}) > 1, "all keys on one partition"

    for partition in range(6):
        got = consume(broker.bootstrap, topic, partition)
        want = [r for r in acked if r.partition == partition]
        assert_same(got, want)
        for r in got:
            assert partition_of[r.key] == {partition}
        # per key, the order sent is the order read
        for key in {r.key for r in got}:
            sent = [r.value for r in records_for(records, key)]
            assert [r.value for r in got if r.key == key] == sent


def records_for(records, key):
    return [Rec(-1, k, v) for k, v in records if k == key]


def test_headers_survive(broker):
    topic = unique("headers")
    create_topic(broker.bootstrap, topic)
    records = [
        (b"k1", b"v1", [("content-type", b"application/json"), ("trace", b"\x00\x01\xff")]),
        (b"k2", b"v2", [("dup", b"first"), ("dup", b"second"), ("empty", b"")]),
        (b"k3", b"v3", [("null-value", None)]),
        (b"k4", b"v4", [("unicode-\u00e9\u4e2d", "\u00e9t\u00e9".encode())]),
        (None, b"no key, one big header", [("big", b"x" * 50_000)]),
        (b"k6", None, [("tombstone", b"yes")]),
    ]
    acked = produce(broker.bootstrap, topic, records)
    got = consume(broker.bootstrap, topic)
    assert_same(got, acked)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(broker, codec):
    topic = unique(f"codec-{codec}")
    create_topic(broker.bootstrap, topic)
    records = [(f"key-{i % 37}".encode(),
                (f"record {i} " + "compressible text " * (i % 20)).encode(),
                [("i", str(i).encode())])
               for i in range(5000)]
    acked = produce(broker.bootstrap, topic, records, compression_type=codec,
                    linger_ms=20, batch_num_messages=1000)
    assert [r.offset for r in acked] == list(range(5000))
    assert_same(consume(broker.bootstrap, topic), acked)
    # and from the middle of a (compressed) batch
    assert_same(consume(broker.bootstrap, topic, start=2345, count=10), acked[2345:2355])


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, acks):
    topic = unique(f"acks-{acks}")
    create_topic(broker.bootstrap, topic)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(2000)]
    acked = produce(broker.bootstrap, topic, records, acks=acks)
    if acks != "0":
        assert [r.offset for r in acked] == list(range(2000))
    # acks=0 gets no offsets back; the records must still all be there, in order
    wait_until(lambda: watermarks(broker.bootstrap, topic)[1] >= 2000, T,
               what="high watermark 2000")
    got = consume(broker.bootstrap, topic)
    assert [(r.offset, r.key, r.value) for r in got] == [
        (i, k, v) for i, (k, v) in enumerate(records)]


def test_list_offsets(broker):
    topic = unique("offsets")
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 3_600_000  # an hour ago, one record per second
    stamps = [base + i * 1000 for i in range(20)]
    stamps[7] = base + 100_000  # out of order: the max timestamp sits at offset 7
    records = [(b"k", f"v{i}".encode(), None, ts) for i, ts in enumerate(stamps)]
    acked = produce(broker.bootstrap, topic, records)
    assert [r.timestamp for r in acked] == stamps  # CreateTime kept

    assert watermarks(broker.bootstrap, topic) == (0, 20)
    tp = TopicPartition(topic, 0)
    client = admin(broker.bootstrap)

    def list_offset(spec):
        return client.list_offsets({tp: spec}, request_timeout=T)[tp].result(T).offset

    def first_at_or_after(ts):
        return next((i for i, s in enumerate(stamps) if s >= ts), -1)

    assert list_offset(OffsetSpec.earliest()) == 0
    assert list_offset(OffsetSpec.latest()) == 20
    assert list_offset(OffsetSpec.max_timestamp()) == 7
    # by timestamp: the first offset whose timestamp is >= the one asked for
    for ts, want in ((base + 3500, 4), (base, 0), (base - 10, 0), (base + 6000, 6),
                     (base + 99_000, 7), (base + 12_000, 7)):
        assert first_at_or_after(ts) == want
        assert list_offset(OffsetSpec.for_timestamp(ts)) == want, f"timestamp {ts - base}"
    assert list_offset(OffsetSpec.for_timestamp(base + 200_000)) == -1  # none that late

    # the consumer API for the same thing
    from kafka_util import consumer
    c = consumer(broker.bootstrap)
    try:
        found = c.offsets_for_times([TopicPartition(topic, 0, base + 5_000)], timeout=T)
        assert found[0].offset == 5
        found = c.offsets_for_times([TopicPartition(topic, 0, base + 12_000)], timeout=T)
        assert found[0].offset == 7  # offset 7 is the first with a timestamp that late
        found = c.offsets_for_times([TopicPartition(topic, 0, base + 500_000)], timeout=T)
        assert found[0].offset in (-1, 20)  # librdkafka reports "none" as end or -1
    finally:
        c.close()


def test_describe_cluster(broker):
    client = admin(broker.bootstrap)  # must outlive the future
    result = client.describe_cluster(request_timeout=T).result(T)
    assert len(result.nodes) == 1
    node = result.nodes[0]
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    assert result.controller is not None
    assert result.cluster_id


def describe(client, topic) -> dict[str, str]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = client.describe_configs([res], request_timeout=T)[res].result(T)
    return {name: e.value for name, e in entries.items()}


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_admin_configs(broker):
    topic = unique("configs")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "86400000",
                                                  "cleanup.policy": "delete"})
    client = admin(broker.bootstrap)
    configs = describe(client, topic)
    assert configs["retention.ms"] == "86400000"
    assert configs["cleanup.policy"] == "delete"
    for name in ("retention.bytes", "segment.bytes", "segment.ms", "max.message.bytes"):
        assert name in configs, f"{name} missing from {sorted(configs)}"

    # AlterConfigs replaces the topic's whole set of overrides
    res = ConfigResource(ResourceType.TOPIC, topic,
                         set_config={"retention.ms": "3600000", "max.message.bytes": "2000000"})
    client.alter_configs([res], request_timeout=T)[res].result(T)
    configs = describe(client, topic)
    assert configs["retention.ms"] == "3600000"
    assert configs["max.message.bytes"] == "2000000"

    # IncrementalAlterConfigs: set one, delete (reset to default) another
    default_max = describe(client, unique_topic_default(broker))["max.message.bytes"]
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    client.incremental_alter_configs([res], request_timeout=T)[res].result(T)
    configs = describe(client, topic)
    assert configs["segment.bytes"] == "1048576"
    assert configs["retention.ms"] == "3600000"  # untouched
    assert configs["max.message.bytes"] == default_max

    # an unknown config name or a bad value is refused, and changes nothing
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "not-a-number",
                    incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(Exception):
        client.incremental_alter_configs([res], request_timeout=T)[res].result(T)
    assert describe(client, topic)["retention.ms"] == "3600000"


def unique_topic_default(broker) -> str:
    topic = unique("defaults")
    create_topic(broker.bootstrap, topic)
    return topic


def test_admin_create_partitions_and_delete_topics(broker):
    topic = unique("grow")
    create_topic(broker.bootstrap, topic, partitions=2)
    client = admin(broker.bootstrap)
    produce(broker.bootstrap, topic, [(b"k", b"before")], partition=1)

    client.create_partitions([NewPartitions(topic, 5)], request_timeout=T)[topic].result(T)
    wait_until(lambda: len(client.list_topics(topic, timeout=10).topics[topic].partitions) == 5,
               30, what="5 partitions")
    acked = produce(broker.bootstrap, topic, [(b"k", b"new partition")], partition=4)
    assert acked[0].offset == 0
    assert [r.value for r in consume(broker.bootstrap, topic, 4)] == [b"new partition"]
    assert [r.value for r in consume(broker.bootstrap, topic, 1)] == [b"before"]

    # shrinking is refused
    with pytest.raises(Exception):
        client.create_partitions([NewPartitions(topic, 3)], request_timeout=T)[topic].result(T)

    # creating an existing topic is refused
    from confluent_kafka.admin import NewTopic
    with pytest.raises(Exception):
        client.create_topics([NewTopic(topic, 1, 1)], request_timeout=T)[topic].result(T)

    client.delete_topics([topic], request_timeout=T)[topic].result(T)
    wait_until(lambda: topic not in client.list_topics(timeout=10).topics, 30,
               what="topic gone from the topic list")


def test_auto_create_on_metadata(broker):
    topic = unique("auto")
    acked = produce(broker.bootstrap, topic, [(b"k", b"v")])  # no CreateTopics first
    assert acked[0].offset == 0
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert len(md.topics[topic].partitions) == 1
