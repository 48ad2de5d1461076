#!/usr/bin/env bash
# kafka.sh: a real Apache Kafka 4.3.1 (single-node KRaft, broker+controller in
# one JVM) and Kafka's own tools, assembled from Maven Central via
# benches/kafka/pom.xml, as the baseline the Strata benchmarks compare against.
# Nothing is installed by hand: the jars are fetched into a cache on first use.
#
#   kafka.sh libs                    fetch the jars (once), print the libs dir
#   kafka.sh start DATA_DIR PORT     write DATA_DIR/server.properties, format the
#                                    storage (first time only), then exec the
#                                    broker in the foreground (the caller's
#                                    child PID is the JVM; stop it with SIGTERM).
#                                    Clients use 127.0.0.1:PORT, the controller
#                                    listens on PORT+1. Logs: DATA_DIR/server.log
#   kafka.sh run-class CLASS ARGS... run any class on that classpath, e.g.
#                                    org.apache.kafka.tools.ProducerPerformance,
#                                    org.apache.kafka.tools.ConsumerPerformance,
#                                    org.apache.kafka.tools.TopicCommand
#
# Environment:
#   STRATA_BENCH_CACHE   cache root (default ~/.cache/strata-bench)
#   KAFKA_HEAP_OPTS      heap (default -Xmx1G -Xms1G for start, -Xmx512M for
#                        run-class, as kafka-server-start / the perf scripts)
#   KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS   as in kafka-run-class.sh
#   KAFKA_LOG_LEVEL      broker root log level (default INFO, as stock Kafka)
#   KAFKA_TOOLS_LOG_LEVEL  tools' log level on stderr (default WARN)
set -euo pipefail

KAFKA_VERSION=4.3.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
CACHE_ROOT="${STRATA_BENCH_CACHE:-$HOME/.cache/strata-bench}"
KAFKA_HOME_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME_DIR/libs"
STAMP="$LIBS/.complete"
TOOLS_LOG4J="$KAFKA_HOME_DIR/tools-log4j2.properties"

die() { echo "kafka.sh: $*" >&2; exit 1; }

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

# Fetch the jars unless a complete copy for this very pom is already there.
ensure_libs() {
  local sum
  sum="$(pom_sum)"
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$sum" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch Kafka's jars)"
  mkdir -p "$KAFKA_HOME_DIR"
  # Serialise concurrent first calls; re-check once we hold the lock.
  exec 9>"$KAFKA_HOME_DIR/.lock"
  flock 9
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$sum" ]]; then
    exec 9>&-
    return 0
  fi
  local tmp="$KAFKA_HOME_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars into $LIBS ..." >&2
  # mvn -q still prints colour codes on stdout: keep our stdout for the path.
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >&2; then
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed"
  fi
  echo "$sum" >"$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  exec 9>&-
}

# Log config for the tools: WARN and above on stderr (like tools-log4j2.yaml),
# so that stdout carries only the tools' own output.
ensure_tools_log4j() {
  local level="${KAFKA_TOOLS_LOG_LEVEL:-WARN}"
  local want
  want="status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $level
rootLogger.appenderRef.stderr.ref = STDERR"
  if [[ ! -f "$TOOLS_LOG4J" || "$(cat "$TOOLS_LOG4J")" != "$want" ]]; then
    printf '%s\n' "$want" >"$TOOLS_LOG4J.$$"
    mv "$TOOLS_LOG4J.$$" "$TOOLS_LOG4J"
  fi
}

# JVM flags as kafka-run-class.sh sets them by default.
jvm_perf_opts() {
  local def="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true"
  # shellcheck disable=SC2206
  PERF_OPTS=(${KAFKA_JVM_PERFORMANCE_OPTS:-$def})
  # shellcheck disable=SC2206
  EXTRA_OPTS=(${KAFKA_OPTS:-})
}

# A random cluster id in Kafka's format (base64url of 16 bytes, no padding),
# not starting with '-' so that it cannot be mistaken for a flag.
random_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && ${#id} -eq 22 ]] && { echo "$id"; return; }
  done
}

cmd_libs() {
  ensure_libs
  echo "$LIBS"
}

cmd_start() {
  [[ $# -eq 2 ]] || die "usage: kafka.sh start DATA_DIR PORT"
  local data="$1" port="$2"
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number: $port"
  local cport=$((port + 1))
  ensure_libs
  mkdir -p "$data"
  data="$(cd "$data" && pwd)"
  local props="$data/server.properties"
  local log4j="$data/log4j2.properties"

  # Single combined node; Kafka's defaults otherwise (notably no log.flush.*:
  # durability is by replication, the OS flushes page cache when it likes).
  cat >"$props" <<EOF
# Written by benches/kafka/kafka.sh: single-node KRaft, broker+controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$data/logs
num.partitions=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF

  # Broker logs go to DATA_DIR/server.log only (nothing on stdout/stderr).
  cat >"$log4j" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $data/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${KAFKA_LOG_LEVEL:-INFO}
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF

  local cp="$LIBS/*"
  jvm_perf_opts
  # Format once (kafka-storage format --standalone: a single-voter dynamic
  # quorum, as controller.quorum.bootstrap.servers asks); a restart on the
  # same DATA_DIR keeps its data.
  if [[ ! -f "$data/logs/meta.properties" ]]; then
    ensure_tools_log4j
    local cid
    cid="$(random_cluster_id)"
    if ! java -Xmx256M "${PERF_OPTS[@]}" -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
        -cp "$cp" kafka.tools.StorageTool format \
        --config "$props" --cluster-id "$cid" --standalone \
        >"$data/format.log" 2>&1; then
      cat "$data/format.log" >&2
      die "storage format failed"
    fi
  fi

  local def_heap="-Xmx1G -Xms1G"
  # shellcheck disable=SC2206
  local heap=(${KAFKA_HEAP_OPTS:-$def_heap})
  exec java "${heap[@]}" "${PERF_OPTS[@]}" "${EXTRA_OPTS[@]}" \
    -Dlog4j2.configurationFile="$log4j" -Dkafka.logs.dir="$data" \
    -cp "$cp" kafka.Kafka "$props"
}

cmd_run_class() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh run-class CLASS [ARGS...]"
  local class="$1"; shift
  ensure_libs
  ensure_tools_log4j
  jvm_perf_opts
  local def_heap="-Xmx512M"
  # shellcheck disable=SC2206
  local heap=(${KAFKA_HEAP_OPTS:-$def_heap})
  exec java "${heap[@]}" "${PERF_OPTS[@]}" "${EXTRA_OPTS[@]}" \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    -cp "$LIBS/*" "$class" "$@"
}

case "${1:-}" in
  libs) shift; cmd_libs "$@" ;;
  start) shift; cmd_start "$@" ;;
  run-class) shift; cmd_run_class "$@" ;;
  *) die "usage: kafka.sh {libs | start DATA_DIR PORT | run-class CLASS ARGS...}" ;;
esac
