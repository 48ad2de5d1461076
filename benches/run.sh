#!/usr/bin/env bash
# Strata's benchmark, one command: installs what it compares against (Tansu from
# crates.io, Apache Kafka from Maven Central, s3s-fs), builds Strata and the load
# generator, runs every workload against every target, then runs Kafka's own
# kafka-producer-perf-test / kafka-consumer-perf-test against Kafka and Strata.
#
#   bash benches/run.sh [strata-bench flags...]     e.g. --targets strata-local,kafka
#
# Results: target/bench/results.txt (the table), target/bench/results.json (every row),
# target/bench/kafka-tools.txt (Kafka's tools; their full output in target/bench/kafka-tools/),
# target/bench/segment.txt (strata-segment-bench). Installed programs are cached under
# $STRATA_BENCH_CACHE (default ~/.cache/strata-bench): Tansu's build takes ~17 minutes once.
# STRATA_BENCH_KAFKA_TOOLS=0 skips the Kafka tools pass.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
CACHE="${STRATA_BENCH_CACHE:-$HOME/.cache/strata-bench}"
TANSU_VERSION=0.6.0
S3S_FS_VERSION=0.14.1
OUT=target/bench
mkdir -p "$OUT" "$CACHE"

log() { echo "[bench] $*" >&2; }

log "building strata, strata-bench, strata-null-sink (release)"
cargo build --release --quiet -p strata -p strata-bench

if ! command -v s3s-fs >/dev/null; then
  log "installing s3s-fs $S3S_FS_VERSION"
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --quiet
fi

TANSU="$CACHE/tansu-$TANSU_VERSION/bin/tansu"
if [ ! -x "$TANSU" ]; then
  log "installing tansu $TANSU_VERSION with its storage engines (about 17 minutes, once)"
  cargo install tansu --version "$TANSU_VERSION" --features dynostore --locked --quiet \
    --root "$CACHE/tansu-$TANSU_VERSION" --target-dir "$CACHE/tansu-target"
  rm -rf "$CACHE/tansu-target"
fi

log "assembling Apache Kafka from Maven Central"
KAFKA_LIBS=$(bash benches/kafka/kafka.sh libs)

librdkafka=$(grep -A2 '^name = "rdkafka-sys"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
{
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "versions: strata $(git rev-parse --short HEAD 2>/dev/null || echo '?'), tansu $TANSU_VERSION," \
    "kafka $(basename "$(ls "$KAFKA_LIBS"/kafka_2.13-*.jar | head -1)" .jar | sed 's/kafka_2.13-//')," \
    "rdkafka-sys $librdkafka (librdkafka ${librdkafka#*+})," \
    "s3s-fs $(s3s-fs --version 2>/dev/null | awk '{print $2}')"
  echo "command: bash benches/run.sh $*"
} | tee "$OUT/results.txt"

target/release/strata-bench --tansu "$TANSU" --json "$OUT/results.json" "$@" | tee -a "$OUT/results.txt"

if [ "${STRATA_BENCH_KAFKA_TOOLS:-1}" != 0 ]; then
  log "Kafka's perf tools against Kafka and Strata"
  : > "$OUT/kafka-tools.txt"
  port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; return 1; }
  for target in kafka strata-local; do
    dir=$(mktemp -d)
    p=$(port)
    if [ "$target" = kafka ]; then
      bash benches/kafka/kafka.sh start "$dir/kafka" "$p" >"$dir/server.out" 2>&1 &
    else
      STRATA_LOG=warn target/release/strata serve --listen "127.0.0.1:$p" --data-dir "$dir/strata" >"$dir/server.out" 2>&1 &
    fi
    pid=$!
    wait_port "$p"
    bash benches/kafka/perf.sh "127.0.0.1:$p" "$OUT/kafka-tools/$target" 2>&1 | sed "s/^/$target: /" | tee -a "$OUT/kafka-tools.txt"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
fi
log "the segment format on one core (seal and read rates, no sockets or store)"
target/release/strata-segment-bench | tee "$OUT/segment.txt"

log "done: $OUT/results.txt $OUT/results.json $OUT/segment.txt"
