"""Small helpers over confluent-kafka (librdkafka) used by many tests."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = 60


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass
class Rec:
    """One record as a user sees it."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int | None = None
    partition: int = 0


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1,
                 config: dict[str, str] | None = None) -> None:
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1,
                     config=dict(config or {}))
    client = admin(bootstrap)  # must outlive the futures
    futures = client.create_topics([topic], operation_timeout=30, request_timeout=TIMEOUT_S)
    futures[name].result(timeout=TIMEOUT_S)
    wait_for_topic(bootstrap, name, partitions)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    client = admin(bootstrap)
    while True:
        md = client.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name} not visible with {partitions} partitions: {t}")
        time.sleep(0.2)


def producer(bootstrap: str, **conf) -> Producer:
    base = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
            "message.timeout.ms": TIMEOUT_S * 1000}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(base)


def produce(bootstrap: str, topic: str, records, partition: int | None = None,
            **conf) -> list[Rec]:
    """Produce (key, value[, headers[, timestamp_ms]]) tuples; returns what the broker acknowledged,
    in send order, failing on any delivery error."""
    p = producer(bootstrap, **conf)
    acked: list[Rec | None] = []
    errors: list[str] = []

    def on_delivery(index, key, value, headers):
        def cb(err, msg):
            if err is not None:
                errors.append(f"record {index}: {err}")
                return
            _, ts = msg.timestamp()
            acked[index] = Rec(msg.offset(), key, value, list(headers or []), ts,
                               msg.partition())
        return cb

    for i, rec in enumerate(records):
        key, value = rec[0], rec[1]
        headers = rec[2] if len(rec) > 2 else None
        timestamp = rec[3] if len(rec) > 3 else None
        acked.append(None)
        kwargs = {"key": key, "value": value,
                  "on_delivery": on_delivery(i, key, value, headers)}
        if headers:
            kwargs["headers"] = headers
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    remaining = p.flush(TIMEOUT_S * 2)
    assert remaining == 0, f"{remaining} records still unacknowledged"
    assert not errors, f"delivery errors: {errors[:5]} (of {len(errors)})"
    return acked  # type: ignore[return-value]


def consumer(bootstrap: str, **conf) -> Consumer:
    # group.id is required by librdkafka, but no group API is used: partitions are
    # assigned by hand and nothing is committed.
    base = {"bootstrap.servers": bootstrap, "group.id": unique("strata-e2e"),
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "error", "enable.partition.eof": True}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(base)


def consume(bootstrap: str, topic: str, partition: int = 0, start: int = 0,
            count: int | None = None, timeout: float = TIMEOUT_S, **conf) -> list[Rec]:
    """Reads from `start` until `count` records were read, or (count None) until the end
    of the partition as it is when reading starts."""
    c = consumer(bootstrap, **conf)
    try:
        if count is None:
            _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= start:
                return []
            target_end = high
        else:
            target_end = None
        c.assign([TopicPartition(topic, partition, start)])
        out: list[Rec] = []
        deadline = time.monotonic() + timeout
        while True:
            if count is not None and len(out) >= count:
                break
            if target_end is not None and out and out[-1].offset >= target_end - 1:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out reading {topic}/{partition} from {start}: got {len(out)} "
                    f"records, last offset {out[-1].offset if out else None}, "
                    f"wanted {count if count is not None else f'up to {target_end}'}")
            for msg in c.consume(num_messages=10000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                _, ts = msg.timestamp()
                out.append(Rec(msg.offset(), msg.key(), msg.value(),
                               list(msg.headers() or []), ts, msg.partition()))
        if count is not None:
            return out[:count]
        return [r for r in out if r.offset < target_end]
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10,
                                       cached=False)
    finally:
        c.close()


def wait_until(check, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def assert_same(got: list[Rec], want: list[Rec], compare_timestamps: bool = True) -> None:
    """Record-by-record comparison with a short message on the first difference."""
    assert len(got) == len(want), f"read {len(got)} records, expected {len(want)}"
    for g, w in zip(got, want):
        same = (g.offset == w.offset and g.key == w.key and g.value == w.value
                and list(g.headers) == list(w.headers)
                and (not compare_timestamps or g.timestamp == w.timestamp))
        if not same:
            raise AssertionError(f"first difference at offset {w.offset}:\n got  {g}\n want {w}")
