"""confluent-kafka (librdkafka) consumer groups against Strata: manual synchronous commits
surviving a kill -9 of the consumer process, two members splitting partitions and one
taking over when the other leaves, and cooperative-sticky's incremental rebalance."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException

from kafka_util import admin, create_topic, produce, unique, wait_until

T = 60
FAST_REBALANCE = ["--group-initial-rebalance-delay-ms", "200"]
WORKER = Path(__file__).with_name("group_worker.py")


def member(bootstrap, group, **conf):
    base = {"bootstrap.servers": bootstrap, "group.id": group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(base)


class Reader:
    """Polls group members in turn (librdkafka runs the group protocol in its own
    threads; rebalance callbacks are served from poll), processing each record and
    committing it synchronously."""

    def __init__(self, *consumers):
        self.consumers = list(consumers)
        self.read = {id(c): [] for c in consumers}  # (partition, offset, value)

    def add(self, consumer):
        self.consumers.append(consumer)
        self.read[id(consumer)] = []

    def poll_until(self, done, timeout=T, what="condition", after_poll=None):
        deadline = time.monotonic() + timeout
        while True:
            for c in self.consumers:
                msg = c.poll(0.05)
                if msg is not None:
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            raise KafkaException(msg.error())
                    else:
                        self.read[id(c)].append((msg.partition(), msg.offset(), msg.value()))
                        c.commit(message=msg, asynchronous=False)
                if after_poll is not None:
                    after_poll()
            if done():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {timeout}s")

    def of(self, c):
        return self.read[id(c)]

    def total(self):
        return sum(len(v) for v in self.read.values())


def close_quietly(consumer):
    try:
        consumer.close()
    except RuntimeError:  # closed already
        pass


def parts(consumer):
    return sorted(tp.partition for tp in consumer.assignment())


def test_killed_consumer_resumes_after_its_last_commit(strata, tmp_path):
    broker = strata(extra_args=FAST_REBALANCE)
    topic, group = unique("cg-kill"), unique("cg-kill-group")
    create_topic(broker.bootstrap, topic, partitions=3)
    records = [(f"k{i % 17}".encode(), f"value-{i}".encode()) for i in range(300)]
    acked = produce(broker.bootstrap, topic, records)
    all_records = {(r.partition, r.offset): r.value.decode() for r in acked}

    def run(out):
        return subprocess.Popen(
            [os.environ.get("STRATA_PYTHON", sys.executable), str(WORKER), broker.bootstrap,
             topic, group, str(out), "10"],
            stdout=subprocess.DEVNULL, stderr=open(str(out) + ".stderr", "wb"))

    def lines(out):
        return Path(out).read_text().splitlines() if Path(out).exists() else []

    def parse(out):
        processed, committed = [], []
        for line in lines(out):
            kind, *rest = line.split(" ")
            assert kind != "error", line
            if kind == "processed":
                processed.append((int(rest[0]), int(rest[1]), rest[2]))
            elif kind == "committed":
                committed.append((int(rest[0]), int(rest[1])))
        return processed, committed

    out1, out2 = tmp_path / "run1.txt", tmp_path / "run2.txt"
    first = run(out1)
    try:
        wait_until(lambda: len(parse(out1)[0]) >= 120, T, interval=0.05,
                   what="first run processed 120 records")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    processed1, committed1 = parse(out1)
    assert len(processed1) < len(all_records), "the first run finished before the kill"

    started = time.monotonic()
    second = run(out2)
    try:
        wait_until(lambda: {(p, o) for p, o, _ in parse(out1)[0] + parse(out2)[0]}
                   >= set(all_records), T, what="every record processed by one of the runs")
        resumed_after = time.monotonic() - started
        time.sleep(0.5)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, Path(str(out2) + ".stderr").read_text()
    processed2, _ = parse(out2)

    # what each run read is what was produced
    for p, o, v in processed1 + processed2:
        assert all_records[(p, o)] == v
    # the first run's last processed record is the only one whose commit may be missing
    last1 = processed1[-1][:2]
    assert set(committed1) >= {(p, o) for p, o, _ in processed1[:-1]}
    for partition in range(3):
        done1 = [o for p, o, _ in processed1 if p == partition]
        in2 = [o for p, o, _ in processed2 if p == partition]
        end = max(o for p, o in all_records if p == partition) + 1
        # the restarted consumer starts each partition right after the last commit:
        # nothing is skipped, and only the record in flight at the kill (processed, its
        # commit not seen to return) may come again
        allowed = {(max(done1) + 1) if done1 else 0}
        if last1[0] == partition and last1 not in committed1:
            allowed.add(last1[1])
        assert done1 == list(range(len(done1))), f"partition {partition}: first run {done1}"
        begin = in2[0] if in2 else end
        assert begin in allowed and in2 == list(range(begin, end)), \
            f"partition {partition}: first run ended {done1[-3:]}, second run began {in2[:3]}"
    repeated = [(p, o) for p, o, _ in processed2 if (p, o) in {(q, r) for q, r, _ in processed1}]
    assert repeated in ([], [last1]), f"repeated: {repeated}, in-flight was {last1}"
    # the dead member was dropped when its session (6 s) expired, not after the
    # rebalance timeout (max.poll.interval.ms 60 s)
    assert resumed_after < 40, f"the restarted consumer took {resumed_after:.1f}s"


def test_two_members_split_six_partitions_and_survivor_takes_over(strata):
    broker = strata(extra_args=FAST_REBALANCE)
    topic, group = unique("cg-split"), unique("cg-split-group")
    create_topic(broker.bootstrap, topic, partitions=6)
    a, b = member(broker.bootstrap, group), member(broker.bootstrap, group)
    reader = Reader(a, b)
    try:
        a.subscribe([topic])
        b.subscribe([topic])
        reader.poll_until(lambda: len(parts(a)) == 3 and len(parts(b)) == 3, what="a 3+3 split")
        assert set(parts(a)) | set(parts(b)) == set(range(6))

        first = produce(broker.bootstrap, topic,
                        [(f"k{i}".encode(), f"first-{i}".encode()) for i in range(120)])
        reader.poll_until(lambda: reader.total() >= len(first), what="first records read")
        for c in (a, b):
            assert {p for p, _, _ in reader.of(c)} == set(parts(c))
        b_partitions = parts(b)

        b.close()  # LeaveGroup: the survivor rebalances now, not when b's session expires
        left = time.monotonic()
        reader.consumers.remove(b)
        reader.poll_until(lambda: len(parts(a)) == 6, timeout=10, what="a owning all 6 partitions")
        took = time.monotonic() - left
        assert took < 10, f"takeover took {took:.1f}s, more than the session timeout"

        second = produce(broker.bootstrap, topic,
                         [(f"k{i}".encode(), f"second-{i}".encode()) for i in range(120)])
        reader.poll_until(lambda: reader.total() >= len(first) + len(second),
                          what="second records read")
        time.sleep(1)
        reader.poll_until(lambda: True)  # late duplicates, if any
        after = reader.of(a)[-len(second):]
        assert {p for p, _, _ in after} >= set(b_partitions), "b's partitions not consumed"
        everything = [(p, o) for p, o, _ in reader.of(a) + reader.of(b)]
        assert len(everything) == len(set(everything)), "a committed record was read again"
        assert sorted(everything) == sorted((r.partition, r.offset) for r in first + second)
    finally:
        for c in (a, b):
            close_quietly(c)


def test_cooperative_sticky_revokes_only_moved_partitions(strata):
    broker = strata(extra_args=FAST_REBALANCE)
    topic, group = unique("cg-coop"), unique("cg-coop-group")
    create_topic(broker.bootstrap, topic, partitions=6)
    events = {"a": [], "b": []}

    def callbacks(name):
        def on_assign(_c, tps):
            events[name].append(("assign", sorted(tp.partition for tp in tps)))

        def on_revoke(_c, tps):
            events[name].append(("revoke", sorted(tp.partition for tp in tps)))
        return {"on_assign": on_assign, "on_revoke": on_revoke}

    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    a = member(broker.bootstrap, group, **coop)
    b = member(broker.bootstrap, group, **coop)
    reader = Reader(a)
    a_sizes = []
    try:
        a.subscribe([topic], **callbacks("a"))
        reader.poll_until(lambda: len(parts(a)) == 6, what="a owning all 6 partitions")
        client = admin(broker.bootstrap)  # must outlive its futures
        described = client.describe_consumer_groups([group])[group].result(T)
        assert described.partition_assignor == "cooperative-sticky"
        assert [e for e in events["a"] if e[1]] == [("assign", list(range(6)))], events["a"]
        first = produce(broker.bootstrap, topic,
                        [(f"k{i}".encode(), f"first-{i}".encode()) for i in range(60)])
        reader.poll_until(lambda: reader.total() >= len(first), what="first records read")

        b.subscribe([topic], **callbacks("b"))
        reader.add(b)
        reader.poll_until(lambda: len(parts(a)) == 3 and len(parts(b)) == 3,
                          what="a 3+3 split", after_poll=lambda: a_sizes.append(len(parts(a))))
        # settle: no further rebalances take partitions away
        deadline = time.monotonic() + 3
        reader.poll_until(lambda: time.monotonic() > deadline,
                          after_poll=lambda: a_sizes.append(len(parts(a))))
        kept, moved = parts(a), parts(b)
        assert set(kept) | set(moved) == set(range(6)) and not set(kept) & set(moved)

        revokes = [ps for kind, ps in events["a"] if kind == "revoke"]
        assert revokes == [moved], f"a's callbacks: {events['a']}"
        assert [("assign", list(range(6)))] == [e for e in events["a"] if e[0] == "assign" and e[1]]
        assert min(a_sizes) == 3, f"a's assignment shrank below what it kept: {a_sizes}"
        assert [ps for kind, ps in events["b"] if kind == "assign" and ps] == [moved], events["b"]
        assert not [e for e in events["b"] if e[0] == "revoke" and e[1]], events["b"]

        second = produce(broker.bootstrap, topic,
                         [(f"k{i}".encode(), f"second-{i}".encode()) for i in range(60)])
        reader.poll_until(lambda: reader.total() >= len(first) + len(second),
                          what="second records read")
        assert {p for p, _, _ in reader.of(b)} == set(moved)
        everything = [(p, o) for p, o, _ in reader.of(a) + reader.of(b)]
        assert sorted(everything) == sorted((r.partition, r.offset) for r in first + second)
    finally:
        for c in (b, a):
            close_quietly(c)
