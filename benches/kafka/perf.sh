#!/usr/bin/env bash
# perf.sh: Kafka's own perf tools (4.3.1, via kafka.sh run-class) against any
# Kafka-protocol broker, so Strata and Apache Kafka are measured the same way.
#
#   perf.sh BOOTSTRAP OUT_PREFIX
#
# Creates topic perf-<random> (8 partitions, TopicCommand), then runs
#   produce-acks1    ProducerPerformance 1,000,000 x 100 B, acks=1
#   produce-acksall  ProducerPerformance 1,000,000 x 100 B, acks=all
#                    (both: linger.ms=5 batch.size=1048576, --throughput -1)
#   consume          ConsumerPerformance of that topic, reading every record
#                    both runs wrote (2,000,000 by default)
# and prints each tool's summary line prefixed with the workload name, e.g.
#   produce-acks1: 1000000 records sent, 163692.9 records/sec (15.61 MB/sec), ...
#   consume-fields: start.time, end.time, data.consumed.in.MB, MB.sec, ...
#   consume: 2026-11-23 18:11:53:486, 2026-11-23 18:11:57:975, 190.7349, ...
# Full tool output goes to OUT_PREFIX.<workload>.log, the printed lines also to
# OUT_PREFIX.summary.txt (OUT_PREFIX's directory is created).
#
# Environment (defaults as above): PERF_NUM_RECORDS, PERF_RECORD_SIZE,
# PERF_PARTITIONS, PERF_REPLICATION_FACTOR (1), PERF_TOPIC (perf-<random>).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA="$HERE/kafka.sh"

if [[ $# -ne 2 ]]; then
  echo "usage: perf.sh BOOTSTRAP OUT_PREFIX" >&2
  exit 2
fi
BOOTSTRAP="$1"
OUT="$2"
N="${PERF_NUM_RECORDS:-1000000}"
SIZE="${PERF_RECORD_SIZE:-100}"
PARTS="${PERF_PARTITIONS:-8}"
RF="${PERF_REPLICATION_FACTOR:-1}"
TOPIC="${PERF_TOPIC:-perf-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')}"

mkdir -p "$(dirname "$OUT")"
SUMMARY="$OUT.summary.txt"
: >"$SUMMARY"

# Fetch the jars first so a first-time download does not land in a tool log.
"$KAFKA" libs >/dev/null

say() { echo "$*" | tee -a "$SUMMARY"; }

# run WORKLOAD CLASS ARGS...: run a tool, its output to OUT.WORKLOAD.log.
run() {
  local name="$1"; shift
  local log="$OUT.$name.log"
  if ! "$KAFKA" run-class "$@" >"$log" 2>&1; then
    echo "perf.sh: $name failed; tail of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
}

say "topic: $TOPIC partitions=$PARTS replication-factor=$RF bootstrap=$BOOTSTRAP"
run create org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
  --create --topic "$TOPIC" --partitions "$PARTS" --replication-factor "$RF"

produce() {
  local name="$1" acks="$2"
  run "$name" org.apache.kafka.tools.ProducerPerformance \
    --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" \
    --num-records "$N" --record-size "$SIZE" --throughput -1 \
    --command-property acks="$acks" linger.ms=5 batch.size=1048576
  # The final summary is the last "records sent" line (it has percentiles).
  local line
  line="$(grep 'records sent' "$OUT.$name.log" | grep '50th' | tail -n 1 || true)"
  [[ -n "$line" ]] || { echo "perf.sh: no summary in $OUT.$name.log" >&2; exit 1; }
  say "$name: $line"
}

produce produce-acks1 1
produce produce-acksall all

TOTAL=$((2 * N))
run consume org.apache.kafka.tools.ConsumerPerformance \
  --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" --num-records "$TOTAL"
header="$(grep -m1 '^start.time' "$OUT.consume.log" || true)"
data="$(grep -A1 '^start.time' "$OUT.consume.log" | tail -n 1 || true)"
[[ -n "$header" && -n "$data" && "$data" != "$header" ]] \
  || { echo "perf.sh: no summary in $OUT.consume.log" >&2; exit 1; }
say "consume-fields: $header"
say "consume: $data"
# ConsumerPerformance only warns when it times out before reading everything.
consumed="$(echo "$data" | awk -F', ' '{print $5}')"
if [[ "$consumed" != "$TOTAL" ]]; then
  echo "perf.sh: consume read $consumed of $TOTAL records" >&2
  exit 1
fi
