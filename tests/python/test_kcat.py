"""kcat (Debian's package, its own librdkafka) against Strata."""

import re
import subprocess

from kafka_util import consume, create_topic, unique

KCAT_TIMEOUT = 60


def kcat(*args, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["kcat", *args], input=stdin, capture_output=True,
                          timeout=KCAT_TIMEOUT)
    assert proc.returncode == 0, (
        f"kcat {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode()}")
    return proc.stdout.decode()


def test_kcat_lists_broker_and_topics(broker):
    topic = unique("kcat-list")
    create_topic(broker.bootstrap, topic, partitions=3)
    out = kcat("-b", broker.bootstrap, "-L")
    assert re.search(r"1 brokers?:", out), out
    assert re.search(rf"broker \d+ at 127\.0\.0\.1:{broker.port}", out), out
    assert f'topic "{topic}" with 3 partitions' in out, out
    # the topic alone, with its leaders
    one = kcat("-b", broker.bootstrap, "-L", "-t", topic)
    assert f'topic "{topic}" with 3 partitions' in one, one
    assert len(re.findall(r"partition \d+, leader \d+", one)) == 3, one


def test_kcat_produce_and_consume_with_keys_and_headers(broker):
    topic = unique("kcat-rw")
    create_topic(broker.bootstrap, topic)
    lines = [f"key-{i}:value {i} with spaces" for i in range(50)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", "-K:",
         "-H", "trace=abc123", "-H", "source=kcat",
         stdin=("\n".join(lines) + "\n").encode())

    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning",
               "-e", "-q", "-f", "%o|%k|%s|%h\\n")
    got = out.splitlines()
    want = [f"{i}|key-{i}|value {i} with spaces|trace=abc123,source=kcat"
            for i in range(50)]
    assert got == want

    # a second client sees the same records, headers as bytes
    recs = consume(broker.bootstrap, topic)
    assert [(r.offset, r.key, r.value) for r in recs] == [
        (i, f"key-{i}".encode(), f"value {i} with spaces".encode()) for i in range(50)]
    assert all(r.headers == [("trace", b"abc123"), ("source", b"kcat")] for r in recs)

    # consuming from an offset in the middle
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "45", "-e", "-q",
               "-f", "%o %k\\n")
    assert out.splitlines() == [f"{i} key-{i}" for i in range(45, 50)]
