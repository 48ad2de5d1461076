"""kafka-python (pure Python client) against Strata."""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from kafka_util import unique, wait_until

T_MS = 30_000


def admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=T_MS,
                            client_id="strata-e2e-kafka-python")


def test_admin_create_describe_list(broker):
    topic = unique("kp-admin")
    client = admin(broker)
    try:
        client.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                       topic_configs={"retention.ms": "7200000"})],
                             timeout_ms=T_MS)
        wait_until(lambda: topic in client.list_topics(), 30, what=f"{topic} listed")

        responses = client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
        configs = {}
        for response in responses:
            for resource in response.resources:
                error_code, _msg, _type, name = resource[0], resource[1], resource[2], resource[3]
                assert error_code == 0, resource
                assert name == topic
                for entry in resource[4]:
                    configs[entry[0]] = entry[1]
        assert configs.get("retention.ms") == "7200000", configs
        assert "segment.bytes" in configs

        described = client.describe_topics([topic])
        assert len(described) == 1 and described[0]["error_code"] == 0
        assert len(described[0]["partitions"]) == 3
    finally:
        client.close()


def test_produce_and_consume_with_manual_assignment(broker):
    topic = unique("kp-rw")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=T_MS)
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"value-{i}".encode(),
                             headers=[("n", str(i).encode())], partition=0)
               for i in range(1000)]
    producer.flush(timeout=60)
    metas = [f.get(timeout=60) for f in futures]
    producer.close()
    assert [m.offset for m in metas] == list(range(1000))

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000, request_timeout_ms=T_MS + 1000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline_polls = 200
    while len(got) < 1000 and deadline_polls > 0:
        deadline_polls -= 1
        for records in consumer.poll(timeout_ms=500, max_records=500).values():
            got.extend(records)
    consumer.close()
    assert [(r.offset, r.key, r.value, list(r.headers)) for r in got] == [
        (i, f"k{i}".encode(), f"value-{i}".encode(), [("n", str(i).encode())])
        for i in range(1000)]

    # seek into the middle
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=T_MS + 1000)
    consumer.assign([tp])
    consumer.seek(tp, 990)
    got = []
    for _ in range(100):
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
        if len(got) >= 10:
            break
    assert consumer.end_offsets([tp])[tp] == 1000
    assert consumer.beginning_offsets([tp])[tp] == 0
    consumer.close()
    assert [r.offset for r in got] == list(range(990, 1000))
