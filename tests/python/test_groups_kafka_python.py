"""kafka-python consumer groups against Strata: JSON records, commits, a second member
resuming after the commit, and new records read exactly once across the group.

This module's broker runs with Kafka's default group.initial.rebalance.delay.ms (3000)."""

import json
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from kafka_util import unique, wait_until

T = 60
T_MS = T * 1000
PARTITIONS = 3


def json_producer(bootstrap):
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                         key_serializer=str.encode,
                         value_serializer=lambda v: json.dumps(v).encode(),
                         request_timeout_ms=T_MS)


def group_consumer(bootstrap, topic, group, **conf):
    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         client_id=f"kp-{group}", value_deserializer=json.loads,
                         key_deserializer=bytes.decode, auto_offset_reset="earliest",
                         enable_auto_commit=False, session_timeout_ms=10_000,
                         heartbeat_interval_ms=1000, request_timeout_ms=T_MS, **conf)


def produce(bootstrap, topic, values):
    """Sends {"n": ..} dicts keyed by n; returns {(partition, offset): value}."""
    producer = json_producer(bootstrap)
    try:
        futures = [(v, producer.send(topic, key=f"key-{v['n']}", value=v)) for v in values]
        producer.flush(T)
        return {(md.partition, md.offset): v for v, md in
                ((v, f.get(timeout=T)) for v, f in futures)}
    finally:
        producer.close(timeout=10)


class Member(threading.Thread):
    """One group member polling in its own thread (kafka-python consumers are not
    thread-safe): records what it reads and commits synchronously after each poll."""

    def __init__(self, consumer):
        super().__init__(daemon=True)
        self.consumer = consumer
        self.read = []  # (partition, offset, value)
        self.assignment = set()
        self.errors = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        try:
            while not self.stopping.is_set():
                batches = self.consumer.poll(timeout_ms=200)
                with self.lock:
                    for tp, records in batches.items():
                        self.read.extend((r.partition, r.offset, r.value) for r in records)
                if batches:
                    self.consumer.commit()
                with self.lock:
                    self.assignment = {tp.partition for tp in self.consumer.assignment()}
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            self.consumer.close()

    def snapshot(self):
        with self.lock:
            return list(self.read), set(self.assignment)

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive(), "member thread did not stop"


def test_json_group_commit_resume_and_exactly_once(strata):
    broker = strata()  # default group.initial.rebalance.delay.ms
    topic, group = unique("kp-json"), unique("kp-group")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=T_MS)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                            timeout_ms=T_MS)
    finally:
        admin.close()
    first = produce(broker.bootstrap, topic,
                    [{"n": i, "batch": "first", "tags": ["a", i % 3]} for i in range(30)])
    assert {p for p, _ in first} == set(range(PARTITIONS)), "keys all on one partition"
    end = {p: max(o for q, o in first if q == p) + 1 for p in range(PARTITIONS)}

    # 1. one member reads everything, decoded from JSON, and commits
    c1 = group_consumer(broker.bootstrap, topic, group)
    got = {}
    try:
        deadline = time.monotonic() + T
        while len(got) < len(first) and time.monotonic() < deadline:
            for records in c1.poll(timeout_ms=500).values():
                for r in records:
                    assert (r.partition, r.offset) not in got, f"read twice: {r}"
                    got[(r.partition, r.offset)] = r.value
                    assert r.key == f"key-{r.value['n']}"
        assert got == first
        assert {tp.partition for tp in c1.assignment()} == set(range(PARTITIONS))
        c1.commit()
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        assert {tp.partition: c1.committed(tp) for tp in tps} == end
    finally:
        c1.close()

    # 2. a second member of the group starts at the committed offsets: nothing re-read
    m2 = Member(group_consumer(broker.bootstrap, topic, group))
    m2.start()
    m3 = None
    try:
        wait_until(lambda: m2.snapshot()[1] == set(range(PARTITIONS)), T,
                   what="second member assigned all partitions")
        time.sleep(2)  # time to (wrongly) re-read committed records
        read, _ = m2.snapshot()
        assert read == [], f"re-read committed records: {read[:5]}"

        # 3. a third member joins; once the group is stable, new records are read exactly
        #    once across the two members
        m3 = Member(group_consumer(broker.bootstrap, topic, group))
        m3.start()

        def split():
            a, b = m2.snapshot()[1], m3.snapshot()[1]
            return a and b and not (a & b) and (a | b) == set(range(PARTITIONS)) and (a, b)

        wait_until(split, T, what="the two members splitting the partitions")
        second = produce(broker.bootstrap, topic,
                         [{"n": 100 + i, "batch": "second"} for i in range(45)])

        def all_read():
            return len(m2.snapshot()[0]) + len(m3.snapshot()[0]) >= len(second)

        wait_until(all_read, T, what="new records read")
        time.sleep(1.5)  # late duplicates would show up here
        read2, own2 = m2.snapshot()
        read3, own3 = m3.snapshot()
        assert read2 and read3, "one member read nothing"
        assert {p for p, _, _ in read2} <= own2 and {p for p, _, _ in read3} <= own3
        both = [((p, o), v) for p, o, v in read2 + read3]
        assert len(both) == len(second), f"{len(both)} reads of {len(second)} new records"
        assert dict(both) == second
    finally:
        for m in (m2, m3):
            if m is not None:
                m.stop()
        assert not m2.errors and not (m3 and m3.errors), (m2.errors, m3 and m3.errors)

    # every new record committed
    final = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                          enable_auto_commit=False, request_timeout_ms=T_MS)
    try:
        want = {p: end[p] + sum(1 for q, _ in second if q == p) for p in range(PARTITIONS)}
        got = {p: final.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
        assert got == want
    finally:
        final.close()
