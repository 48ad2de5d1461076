#!/usr/bin/env bash
# Profiles the Strata broker while strata-bench drives it: perf samples the broker's
# CPU time (with DWARF call stacks) and inferno turns them into a flame graph.
#
#   bash benches/profile.sh [strata-bench flags...]
#   e.g. bash benches/profile.sh --targets strata-s3 --workloads 200000:1024 --partitions 8 \
#          --acks all --repeat 1 --latency-rate 0 --cold-bytes 0
#        PROFILE_START=2 bash benches/profile.sh --targets strata-s3 --workloads '' \
#          --latency-rate 0                       # the broker that replays the cold topic
#
# The bench starts a fresh broker per workload (and a second one for the cold replay);
# PROFILE_START=N (default 1) picks which start to attach to, and perf follows that one
# broker until it exits. Results in $PROFILE_OUT (default target/bench/profile):
# flame.svg, stacks.folded (one line per distinct stack, for inferno-diff-folded against
# another build), top.txt (self time by symbol) and bench.txt (the bench's own table).
# PROFILE_FREQ sets the sampling rate (default 999 Hz). Needs perf; inferno is installed
# from crates.io into $STRATA_BENCH_CACHE once. Only cpu-clock is sampled: the machines
# here have no hardware counters.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
CACHE="${STRATA_BENCH_CACHE:-$HOME/.cache/strata-bench}"
INFERNO_VERSION=0.12.3
OUT="${PROFILE_OUT:-target/bench/profile}"
START="${PROFILE_START:-1}"
FREQ="${PROFILE_FREQ:-999}"
mkdir -p "$OUT"

log() { echo "[profile] $*" >&2; }

command -v perf >/dev/null || { log "perf is not installed (apt-get install linux-perf)"; exit 1; }
INFERNO="$CACHE/inferno-$INFERNO_VERSION/bin"
if [ ! -x "$INFERNO/inferno-flamegraph" ]; then
  log "installing inferno $INFERNO_VERSION (once)"
  cargo install inferno --version "$INFERNO_VERSION" --locked --quiet \
    --root "$CACHE/inferno-$INFERNO_VERSION" --target-dir "$CACHE/inferno-target"
  rm -rf "$CACHE/inferno-target"
fi

log "building strata and strata-bench (release, with debug info)"
cargo build --release --quiet -p strata -p strata-bench
rm -f "$OUT/perf.data"

target/release/strata-bench "$@" >"$OUT/bench.txt" 2>&1 &
bench=$!
# The bench's brokers are its children; attach to the START-th one as soon as it runs.
seen=()
attached=""
while kill -0 "$bench" 2>/dev/null; do
  for pid in $(pgrep -P "$bench" -f "strata serve" || true); do
    case " ${seen[*]} " in *" $pid "*) continue ;; esac
    seen+=("$pid")
    if [ "${#seen[@]}" -eq "$START" ]; then
      log "attaching to broker $pid (start $START)"
      perf record -e cpu-clock -F "$FREQ" --call-graph dwarf,16384 -o "$OUT/perf.data" \
        -p "$pid" >"$OUT/perf-record.log" 2>&1 || true
      attached=$pid
      break 2
    fi
  done
  sleep 0.02
done
wait "$bench" || { log "strata-bench failed; see $OUT/bench.txt"; exit 1; }
[ -n "$attached" ] || { log "the bench started fewer than $START brokers"; exit 1; }

log "folding stacks and drawing the flame graph"
perf script -i "$OUT/perf.data" 2>/dev/null | "$INFERNO/inferno-collapse-perf" >"$OUT/stacks.folded"
"$INFERNO/inferno-flamegraph" --title "strata broker: strata-bench $*" \
  <"$OUT/stacks.folded" >"$OUT/flame.svg"
# Written whole, then cut: `head` closing the pipe early would fail the script.
perf report -i "$OUT/perf.data" --no-children --sort dso,symbol -g none --stdio \
  >"$OUT/report.txt" 2>/dev/null
grep -v -e '^#' -e '^$' "$OUT/report.txt" | sed -e 's/[ -]*$//' | sed -n 1,60p >"$OUT/top.txt"
rm -f "$OUT/report.txt"
log "done: $OUT/flame.svg $OUT/top.txt"
