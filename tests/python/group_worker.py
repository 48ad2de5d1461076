"""A confluent-kafka group member run as its own process by test_groups_confluent.py, so
the test can kill -9 it. Manual commits: each record is 'processed' (a line appended to
OUT), then committed synchronously, then a 'committed' line is appended. Runs until
SIGTERM (a clean close) or SIGKILL.

    python group_worker.py BOOTSTRAP TOPIC GROUP OUT [PROCESS_MS]

Lines of OUT: `assigned P,P,..`, `processed P OFFSET VALUE`, `committed P OFFSET`,
`error ...`.
"""

import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError


def main() -> int:
    bootstrap, topic, group, out = sys.argv[1:5]
    process_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def log(line: str) -> None:
        os.write(fd, (line + "\n").encode())  # unbuffered: survives kill -9

    stopping = False

    def on_term(_sig, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": f"worker-{os.getpid()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 60000,
    })

    def on_assign(_c, partitions):
        log("assigned " + ",".join(str(p.partition) for p in partitions))

    consumer.subscribe([topic], on_assign=on_assign)
    try:
        while not stopping:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                log(f"error {msg.error()}")
                return 2
            log(f"processed {msg.partition()} {msg.offset()} {msg.value().decode()}")
            time.sleep(process_ms / 1000)  # the work
            consumer.commit(message=msg, asynchronous=False)
            log(f"committed {msg.partition()} {msg.offset()}")
    finally:
        consumer.close()
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
