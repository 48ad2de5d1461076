#!/usr/bin/env bash
# Strata's whole test suite, from a clean clone on a fresh machine:
#   1. scripts/setup.sh          installs what the tests need (idempotent, fast when done)
#   2. cargo build --release     the broker binary, target/release/strata
#   3. cargo test --release      unit, conformance and Rust end-to-end tests
#   4. pytest tests/python       end-to-end through kcat, confluent-kafka, kafka-python,
#                                s3s-fs and moto, pyarrow/DuckDB on sealed segments
#   5. mvn test (tests/java)     the Java client, consumer groups, Kafka's TopicCommand and
#                                ConsumerGroupCommand
#   6. node --test tests/js      KafkaJS producers, consumer groups and admin
# Stops at the first failing step. Logs of each step go to target/test-logs/.
#
# Environment:
#   STRATA_SKIP_SETUP=1      skip step 1
#   STRATA_PYTEST_ARGS="..." extra pytest arguments (e.g. "-k 'not million'")
#   STRATA_NODE_TEST_ARGS="..." extra `node --test` arguments (e.g. "--test-name-pattern=admin")
#   STRATA_ONLY="build python"  run only the named steps (setup build rust python java js)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
LOG_DIR=target/test-logs
mkdir -p "$LOG_DIR"

SECONDS=0
PASSED=0
FAILED=0
SKIPPED=0
STEPS=()

clock() { printf '%02d:%02d' $((SECONDS / 60)) $((SECONDS % 60)); }

summary() {
  echo
  echo "================ strata test summary ($(clock) elapsed) ================"
  for line in "${STEPS[@]}"; do echo "  $line"; done
  echo "total: $PASSED passed, $FAILED failed, $SKIPPED skipped"
}

wanted() { [ -z "${STRATA_ONLY:-}" ] || [[ " $STRATA_ONLY " == *" $1 "* ]]; }

# run_step NAME TIMEOUT_MINUTES COMMAND...: runs it with a time limit, output to the
# console and to $LOG_DIR/NAME.log; on failure prints the summary and exits.
run_step() {
  local name=$1 minutes=$2
  shift 2
  local log="$LOG_DIR/$name.log" started=$SECONDS status=0
  echo
  echo "=== [$(clock)] $name: $*"
  set +e
  timeout --kill-after=30 "$((minutes * 60))" "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  local took=$((SECONDS - started))
  if [ "$status" -ne 0 ]; then
    [ "$status" -eq 124 ] && echo "=== $name: timed out after $minutes minutes"
    count_"$name" "$log" || true
    STEPS+=("$name: FAILED (exit $status, ${took}s) - log: $log")
    FAILED=$((FAILED > 0 ? FAILED : 1))
    summary
    exit 1
  fi
  count_"$name" "$log" || true
  STEPS+=("$name: ok (${took}s)$COUNTED")
}

# count_<step> LOG: adds that runner's test counts to the totals, sets COUNTED.
COUNTED=""
count_setup() { COUNTED=""; }
count_build() { COUNTED=""; }
count_rust() {
  local p f i
  read -r p f i < <(awk '/^test result:/ {
      for (n = 1; n <= NF; n++) {
        if ($(n+1) ~ /^passed/) p += $n; if ($(n+1) ~ /^failed/) f += $n;
        if ($(n+1) ~ /^ignored/) i += $n }
    } END { print p+0, f+0, i+0 }' "$1")
  add_counts "$p" "$f" "$i"
}
count_python() {
  local line p f s e
  line=$(grep -E '[0-9]+ (passed|failed|error|errors|skipped)' "$1" | grep -E ' in [0-9.]+s' | tail -1 || true)
  p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  e=$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  add_counts "$p" "$((f + e))" "$s"
}
count_java() {
  local line run f e s
  line=$(grep -E 'Tests run: [0-9]+, Failures: [0-9]+, Errors: [0-9]+, Skipped: [0-9]+$' "$1" | tail -1 || true)
  [ -n "$line" ] || { COUNTED=""; return; }
  run=$(sed -E 's/.*Tests run: ([0-9]+).*/\1/' <<<"$line")
  f=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
  e=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
  s=$(sed -E 's/.*Skipped: ([0-9]+).*/\1/' <<<"$line")
  add_counts "$((run - f - e - s))" "$((f + e))" "$s"
}
js_total() { # js_total WORD LOG: the last "ℹ WORD N" (spec reporter) or "# WORD N" (tap)
  { grep -E "^(ℹ|#) $1 [0-9]+\$" "$2" || true; } | tail -1 | grep -oE '[0-9]+$' || echo 0
}
count_js() {
  local p f c s t
  p=$(js_total pass "$1"); f=$(js_total fail "$1"); c=$(js_total cancelled "$1")
  s=$(js_total skipped "$1"); t=$(js_total todo "$1")
  add_counts "$p" "$((f + c))" "$((s + t))"
}
add_counts() {
  PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); SKIPPED=$((SKIPPED + $3))
  COUNTED=" - $1 passed, $2 failed, $3 skipped"
}

if [ "${STRATA_SKIP_SETUP:-}" != 1 ] && wanted setup; then
  run_step setup 30 bash scripts/setup.sh
fi
if wanted build; then
  run_step build 50 cargo build --release
fi
if wanted rust; then
  run_step rust 30 cargo test --release --workspace
fi
if wanted python; then
  # shellcheck disable=SC2086
  run_step python 35 "${STRATA_PYTHON:-python3}" -m pytest -q tests/python ${STRATA_PYTEST_ARGS:-}
fi
if wanted java; then
  run_step java 15 mvn -B -ntp -Dstyle.color=never -f tests/java/pom.xml test
fi
if wanted js; then
  # shellcheck disable=SC2086
  run_step js 10 node --test --test-reporter=spec ${STRATA_NODE_TEST_ARGS:-} tests/js/*.test.js
fi

summary
