"""A cluster of three brokers, the metadata service and s3s-fs as real processes on
127.0.0.1 (deploy/local-cluster.sh), driven by confluent-kafka: brokers are killed,
paused and restarted under acks=all idempotent production, and every acknowledged
record must be readable exactly once, in order within its partition."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "local-cluster.sh"
SESSION_MS = 6000
PARTITIONS = 12


class Cluster:
    def __init__(self, root: Path, backend: str, metas: int):
        self.dir = root / "cluster"
        self.env = dict(os.environ)
        self.env.update({
            "STRATA_CLUSTER_BASE_PORT": str(self._base_port()),
            "STRATA_CLUSTER_SESSION_TIMEOUT_MS": str(SESSION_MS),
            "STRATA_LOG": "info",
        })
        self.backend, self.metas = backend, metas

    @staticmethod
    def _base_port() -> int:
        # The script uses B+92.., B+379/380, B+500.., B+900: find a free block.
        while True:
            base = free_port() // 1000 * 1000
            if 20000 <= base <= 60000 and all(_free(base + o) for o in (92, 93, 94, 379, 380, 500, 501, 900)):
                return base

    def run(self, *args: str) -> str:
        out = subprocess.run([str(SCRIPT), *args, "--dir", str(self.dir)], env=self.env,
                             capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"local-cluster {args}: {out.stderr[-3000:]}")
        return out.stdout

    def start(self) -> "Cluster":
        line = self.run("start", "--backend", self.backend, "--metas", str(self.metas))
        self.bootstrap = line.strip().split("=", 1)[1]
        return self

    def pid(self, name: str) -> int:
        return int((self.dir / "pids" / f"{name}.pid").read_text())

    def signal(self, name: str, sig: int) -> None:
        os.kill(self.pid(name), sig)

    def log(self, name: str) -> str:
        return (self.dir / "logs" / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for n in ("broker-1", "broker-2", "broker-3"):
            try:
                self.signal(n, signal.SIGCONT)
            except (OSError, ValueError):
                pass
        subprocess.run([str(SCRIPT), "stop", "--dir", str(self.dir)], env=self.env,
                       capture_output=True, timeout=120)


def _free(port: int) -> bool:
    import socket
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture(params=[("embedded", 1), ("etcd", 2)], ids=["embedded", "etcd"])
def cluster(tmp_path, request):
    backend, metas = request.param
    c = Cluster(tmp_path, backend, metas).start()
    yield c
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for n in ("meta-1", "broker-1", "broker-2", "broker-3"):
            try:
                print(f"----- {n} -----\n{c.log(n)[-6000:]}")
            except OSError:
                pass
    c.stop()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> leader, once every partition has one (or after 15 s)."""
    deadline = time.time() + 15
    while True:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
        out = {p.id: p.leader for p in md.topics[topic].partitions.values()}
        if all(v >= 0 for v in out.values()) or time.time() > deadline:
            return out
        time.sleep(0.2)


class Load:
    """acks=all idempotent production of numbered records to every partition, from a
    thread, remembering which were acknowledged and when."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 120000, "retry.backoff.ms": 100,
        })
        self.acked: dict[int, list[int]] = defaultdict(list)
        self.ack_times: dict[int, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
            return
        self.acked[msg.partition()].append(int(msg.value()))
        self.ack_times[msg.partition()].append(time.monotonic())

    def _run(self):
        n = 0
        while not self.stop.is_set():
            p = n % PARTITIONS
            try:
                self.producer.produce(self.topic, value=str(n).encode(), partition=p,
                                      on_delivery=self._delivered)
                n += 1
            except BufferError:
                pass
            self.producer.poll(0.001 if n % 50 else 0.01)
        self.sent = n
        self.producer.flush(120)

    def start(self) -> "Load":
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(180)
        assert not self.thread.is_alive(), "producer did not drain"


def read_all(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """Every record of every partition, from the beginning, by assignment."""
    out: dict[int, list[int]] = {}
    for p in range(PARTITIONS):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify",
                      "enable.auto.commit": False, "fetch.wait.max.ms": 50})
        high = _high_watermark(c, topic, p)
        c.assign([TopicPartition(topic, p, 0)])
        got: list[int] = []
        deadline = time.time() + 60
        while len(got) < high and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append(int(m.value()))
        c.close()
        out[p] = got
    return out


def _high_watermark(c: Consumer, topic: str, p: int) -> int:
    # Right after leadership moved the first answer may be NOT_LEADER; the
    # client refreshes its metadata and asks again, as applications do.
    for _ in range(40):
        try:
            return c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        except Exception:
            time.sleep(0.5)
    return c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]


def check_exactly_once(load: Load, stored: dict[int, list[int]]) -> None:
    assert not load.errors, load.errors[:5]
    total = sum(len(v) for v in load.acked.values())
    assert total > 0
    for p in range(PARTITIONS):
        acked = load.acked[p]
        # Acks of one partition come back in order with idempotence on.
        assert acked == sorted(acked), f"partition {p}: acks out of order"
        assert stored[p] == sorted(set(stored[p])), f"partition {p}: duplicates or disorder"
        missing = set(acked) - set(stored[p])
        assert not missing, f"partition {p}: {len(missing)} acknowledged records lost"


def first_ack_after(load: Load, partitions, t: float) -> float:
    return max(min((x for x in load.ack_times[p] if x > t), default=float("inf"))
               for p in partitions) - t


def test_kill9_a_broker_under_idempotent_load_loses_and_duplicates_nothing(cluster):
    create_topic(cluster.bootstrap, "orders", PARTITIONS)
    before = leaders(cluster.bootstrap, "orders")
    assert sorted(set(before.values())) == [1, 2, 3], before
    load = Load(cluster.bootstrap, "orders").start()
    time.sleep(4)
    victims = [p for p, l in before.items() if l == 2]
    killed_at = time.monotonic()
    cluster.signal("broker-2", signal.SIGKILL)
    time.sleep(SESSION_MS / 1000 + 6)
    load.finish()
    resumed = first_ack_after(load, victims, killed_at)
    assert resumed < SESSION_MS / 1000 + 5, f"broker-2's partitions resumed after {resumed:.1f}s"
    after = leaders(cluster.bootstrap, "orders")
    assert all(after[p] in (1, 3) for p in victims), after
    check_exactly_once(load, read_all(cluster.bootstrap, "orders"))


def test_a_paused_leader_is_fenced_and_steps_down(cluster):
    create_topic(cluster.bootstrap, "payments", PARTITIONS)
    before = leaders(cluster.bootstrap, "payments")
    victims = [p for p, l in before.items() if l == 3]
    load = Load(cluster.bootstrap, "payments").start()
    time.sleep(3)
    cluster.signal("broker-3", signal.SIGSTOP)
    time.sleep(SESSION_MS / 1000 + 4)
    moved = leaders(cluster.bootstrap.split(",")[0], "payments")
    assert all(moved[p] in (1, 2) for p in victims), moved
    cluster.signal("broker-3", signal.SIGCONT)
    time.sleep(5)
    load.finish()
    log = cluster.log("broker-3")
    assert "moved away; releasing" in log, "the paused leader never stepped down"
    check_exactly_once(load, read_all(cluster.bootstrap, "payments"))


def test_rolling_restart_with_deleted_caches_loses_nothing(cluster):
    create_topic(cluster.bootstrap, "events", PARTITIONS)
    load = Load(cluster.bootstrap, "events").start()
    time.sleep(2)
    for n in ("broker-1", "broker-2", "broker-3"):
        cluster.signal(n, signal.SIGKILL)
        shutil.rmtree(cluster.dir / n / "cache", ignore_errors=True)
        time.sleep(1)
        cluster.run("restart", n)
        time.sleep(SESSION_MS / 1000 + 2)
    load.finish()
    check_exactly_once(load, read_all(cluster.bootstrap, "events"))


def test_a_group_keeps_consuming_when_its_coordinator_dies(cluster):
    create_topic(cluster.bootstrap, "jobs", PARTITIONS)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(600):
        p.produce("jobs", value=str(i).encode(), partition=i % PARTITIONS)
    p.flush(30)
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "workers",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 10000, "fetch.wait.max.ms": 50})
    c.subscribe(["jobs"])
    seen: list[int] = []
    deadline = time.time() + 60
    while len(seen) < 300 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen.append(int(m.value()))
            c.commit(m, asynchronous=False)
    assert len(seen) == 300
    # FindCoordinator tells which broker holds the group.
    coordinator = _coordinator(cluster.bootstrap, "workers")
    cluster.signal(f"broker-{coordinator}", signal.SIGKILL)
    deadline = time.time() + 90
    while len(set(seen)) < 600 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            assert m.error().code() != KafkaError._FATAL, m.error()
            continue
        seen.append(int(m.value()))
        try:
            c.commit(m, asynchronous=False)
        except Exception:
            pass  # a commit racing the coordinator move is retried by the next one
    c.close()
    assert sorted(set(seen)) == list(range(600)), f"got {len(set(seen))} distinct of 600"
    # Committed offsets survived the move: a fresh member of the group finds nothing.
    c2 = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "workers",
                   "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
    committed = c2.committed([TopicPartition("jobs", q) for q in range(PARTITIONS)], timeout=20)
    assert sum(tp.offset for tp in committed) == 600, committed
    c2.close()


def _coordinator(bootstrap: str, group: str) -> int:
    """The node id FindCoordinator (v1) names for `group`."""
    import kwire
    body = kwire.header_v1(10, 1, 1) + kwire.string(group) + kwire.i8(0)
    with kwire.Conn(bootstrap.split(",")[0]) as conn:
        conn.send(kwire.frame(body))
        _, resp = conn.recv_frame()
    r = kwire.Reader(resp)
    r.i32()  # throttle
    assert r.i16() == 0, "FindCoordinator failed"
    r.string()
    return r.i32()


@pytest.mark.parametrize("cluster", [("etcd", 2)], ids=["etcd"], indirect=True)
def test_etcd_losing_a_meta_replica_keeps_brokers_producing_and_failing_over(cluster):
    create_topic(cluster.bootstrap, "audit", PARTITIONS)
    before = leaders(cluster.bootstrap, "audit")
    load = Load(cluster.bootstrap, "audit").start()
    time.sleep(3)
    cluster.signal("meta-1", signal.SIGKILL)
    time.sleep(3)
    # With one replica left, a broker failure is still noticed and handled.
    victims = [p for p, l in before.items() if l == 1]
    killed_at = time.monotonic()
    cluster.signal("broker-1", signal.SIGKILL)
    time.sleep(SESSION_MS / 1000 + 8)
    load.finish()
    resumed = first_ack_after(load, victims, killed_at)
    assert resumed < SESSION_MS / 1000 + 8, f"broker-1's partitions resumed after {resumed:.1f}s"
    after = leaders(cluster.bootstrap.split(",")[1], "audit")
    assert all(after[p] in (2, 3) for p in victims), after
    check_exactly_once(load, read_all(cluster.bootstrap, "audit"))
