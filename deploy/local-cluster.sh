#!/usr/bin/env bash
# A whole Strata cluster on one machine, as plain background processes on 127.0.0.1:
# etcd, `strata meta` replicas, s3s-fs (an S3-protocol server keeping the bucket in a
# folder) and `strata serve` brokers. Meant for trying the cluster mode and for tests that
# kill and restart pieces of it; nothing here is tuned for production.
#
#   deploy/local-cluster.sh start  [--dir DIR] [--brokers 3] [--metas 2] [--backend etcd|embedded] [--base-port P]
#   deploy/local-cluster.sh stop   [--dir DIR] [--purge]
#   deploy/local-cluster.sh status [--dir DIR]
#   deploy/local-cluster.sh restart NAME... [--dir DIR]   (stop if running, start again)
#
# `start` prints one line on stdout, BOOTSTRAP_SERVERS=host:port,..., (progress goes to
# stderr), so `eval "$(deploy/local-cluster.sh start)"` works. DIR/cluster.env holds the
# same and every other address (etcd, meta, S3 endpoint and keys) for scripts to source.
#
# Layout of DIR (default target/local-cluster):
#   logs/NAME.log   pids/NAME.pid, pids/NAME.port   cluster.env
#   s3s-fs/root/BUCKET/...  (the bucket's objects as files)   etcd/data
#   meta-N/ (embedded backend's file)   broker-N/ (data dir: cache/)
# NAME is s3s-fs, etcd, meta-1.., broker-1..; broker-N has node id N. A test can crash a
# member with `kill -9 $(cat DIR/pids/broker-2.pid)` and bring it back, same flags and
# data dir, with `restart broker-2`. `stop` keeps DIR, so the next `start` finds the same
# bucket and metadata; `stop --purge` deletes it.
#
# Ports, from the base port B (STRATA_CLUSTER_BASE_PORT, default 29000), chosen to echo
# the usual ones: brokers B+92.., meta B+500.., etcd client B+379 and peer B+380, S3 B+900.
#
# Environment (flags win):
#   STRATA_CLUSTER_DIR, _BROKERS, _METAS, _BACKEND, _BASE_PORT   defaults of the flags
#   STRATA_CLUSTER_BUCKET (strata), STRATA_CLUSTER_PREFIX (cluster)
#   STRATA_CLUSTER_SESSION_TIMEOUT_MS    passed to meta as --broker-session-timeout-ms
#   STRATA_CLUSTER_CACHE_MEMORY_BYTES (64 MiB), STRATA_CLUSTER_CACHE_DISK_BYTES (256 MiB)
#   STRATA_CLUSTER_BROKER_ARGS, STRATA_CLUSTER_META_ARGS   extra flags (word-split)
#   STRATA_CLUSTER_READY_TIMEOUT (60 s), STRATA_CLUSTER_STOP_GRACE (20 s)
#   STRATA_BIN (target/release/strata, built when missing), ETCD_BIN, S3S_FS_BIN
#   STRATA_LOG (info) is handed to the strata processes.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=${0##*/}

log() { printf '[local-cluster] %s\n' "$*" >&2; }
die() { printf '[local-cluster] error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# --- arguments -------------------------------------------------------------------------
CMD=""
DIR=${STRATA_CLUSTER_DIR:-$REPO_ROOT/target/local-cluster}
BROKERS=${STRATA_CLUSTER_BROKERS:-3}
METAS=${STRATA_CLUSTER_METAS:-}
BACKEND=${STRATA_CLUSTER_BACKEND:-etcd}
BASE_PORT=${STRATA_CLUSTER_BASE_PORT:-29000}
PURGE=0
NAMES=()

value_of() { # value_of FLAG REMAINING-ARG-COUNT NEXT
  [ "$2" -ge 2 ] || die "$1 needs a value"
  printf '%s' "$3"
}
while [ $# -gt 0 ]; do
  case $1 in
    start|stop|status|restart)
      [ -z "$CMD" ] || die "one command at a time ($CMD, $1)"
      CMD=$1 ;;
    s3s-fs|etcd|meta-[0-9]*|broker-[0-9]*)
      [ "$CMD" = restart ] || die "a member name ($1) goes after 'restart'"
      NAMES+=("$1") ;;
    --dir) DIR=$(value_of "$1" $# "${2-}"); shift ;;
    --dir=*) DIR=${1#*=} ;;
    --brokers) BROKERS=$(value_of "$1" $# "${2-}"); shift ;;
    --brokers=*) BROKERS=${1#*=} ;;
    --metas) METAS=$(value_of "$1" $# "${2-}"); shift ;;
    --metas=*) METAS=${1#*=} ;;
    --backend) BACKEND=$(value_of "$1" $# "${2-}"); shift ;;
    --backend=*) BACKEND=${1#*=} ;;
    --base-port) BASE_PORT=$(value_of "$1" $# "${2-}"); shift ;;
    --base-port=*) BASE_PORT=${1#*=} ;;
    --purge) PURGE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try $PROG --help)" ;;
  esac
  shift
done
[ -n "$CMD" ] || { usage >&2; exit 2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
case $BACKEND in
  etcd) METAS=${METAS:-2} ;;
  embedded)
    # An embedded backend is one process's file: a second replica would be a second,
    # diverging cluster, not a standby.
    METAS=${METAS:-1}
    [ "$METAS" = 1 ] || die "--backend embedded runs exactly one meta (got --metas $METAS)" ;;
  *) die "--backend is etcd or embedded (got '$BACKEND')" ;;
esac
in_range() { is_uint "$1" && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
in_range "$BROKERS" 1 200 || die "--brokers must be 1..200 (got '$BROKERS')"
in_range "$METAS" 1 200 || die "--metas must be 1..200 (got '$METAS')"
in_range "$BASE_PORT" 1024 64500 || die "base port must be 1024..64500 (got '$BASE_PORT')"

BUCKET=${STRATA_CLUSTER_BUCKET:-strata}
PREFIX=${STRATA_CLUSTER_PREFIX:-cluster}
READY_TIMEOUT=${STRATA_CLUSTER_READY_TIMEOUT:-60}
STOP_GRACE=${STRATA_CLUSTER_STOP_GRACE:-20}
CACHE_MEMORY_BYTES=${STRATA_CLUSTER_CACHE_MEMORY_BYTES:-67108864}
CACHE_DISK_BYTES=${STRATA_CLUSTER_CACHE_DISK_BYTES:-268435456}
# s3s-fs checks SigV4 signatures against exactly this pair; they protect nothing (the
# server listens on 127.0.0.1 only) but make the brokers sign like they would for S3.
S3_ACCESS_KEY=strata-local-key
S3_SECRET_KEY=strata-local-secret-0123456789
S3_REGION=us-east-1

PORT_BROKER=$((BASE_PORT + 92))
PORT_META=$((BASE_PORT + 500))
PORT_ETCD=$((BASE_PORT + 379))
PORT_ETCD_PEER=$((BASE_PORT + 380))
PORT_S3=$((BASE_PORT + 900))
# broker ports run up from B+92 and must stay below etcd's B+379; meta ports below S3's
[ $((PORT_BROKER + BROKERS)) -le "$PORT_ETCD" ] || die "too many brokers for the port layout"
[ $((PORT_META + METAS)) -le "$PORT_S3" ] || die "too many metas for the port layout"

case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
DIR=${DIR%/}
[ -n "$DIR" ] || die "--dir must not be /"

# --- processes -------------------------------------------------------------------------
pid_file() { printf '%s/pids/%s.pid' "$DIR" "$1"; }

# A pid counts as ours only while its working directory is its folder under DIR: every
# process is started there, so a pid reused by an unrelated process after a crash (or
# a zombie, whose cwd is unreadable) is never signalled or reported as running.
is_ours() { # is_ours NAME PID
  local cwd
  cwd=$(readlink "/proc/$2/cwd" 2>/dev/null) || return 1
  [ "$cwd" = "$DIR/$1" ]
}

running_pid() { # running_pid NAME -> prints the pid if that member runs
  local file pid
  file=$(pid_file "$1")
  [ -f "$file" ] || return 1
  pid=$(<"$file")
  is_uint "$pid" && is_ours "$1" "$pid" || return 1
  printf '%s' "$pid"
}

# Every member known to DIR, in the order they start (store, etcd, meta, brokers); they
# stop the other way round, since brokers flush to the store and commit to meta on SIGTERM.
members() {
  local kind f name
  for kind in s3s-fs etcd meta broker; do
    for f in "$DIR"/pids/"$kind"*.pid; do
      [ -e "$f" ] || continue
      name=${f##*/}
      printf '%s\n' "${name%.pid}"
    done | sort -V
  done
}

scrub_env() {
  # flags are passed explicitly; an inherited STRATA_*/AWS_*/ETCD_* value (say, from a
  # shell set up for a real bucket) must not leak into a local member
  local v
  for v in $(compgen -e); do
    case $v in
      STRATA_LOG) ;;
      STRATA_*|AWS_*|ETCD_*) unset "$v" ;;
    esac
  done
}

STARTED=()
launch() { # launch NAME PORT ENV-ASSIGNMENTS... -- COMMAND...
  local name=$1 port=$2 home="$DIR/$1" logf="$DIR/logs/$1.log"
  shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  mkdir -p "$home"
  printf '===== %s start: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logf"
  (
    cd "$home"
    scrub_env
    if [ ${#envs[@]} -gt 0 ]; then export "${envs[@]}"; fi
    # setsid: the member outlives this script and the terminal it ran in; fd 9 is the
    # lock on DIR, which must not stay held by the members
    exec setsid "$@" </dev/null >>"$logf" 2>&1 9>&-
  ) &
  echo $! >"$(pid_file "$name")"
  echo "$port" >"$DIR/pids/$name.port"
  # what `restart NAME` replays
  {
    printf 'M_PORT=%q\n' "$port"
    printf 'M_ENV=('; printf '%q ' "${envs[@]}"; printf ')\n'
    printf 'M_CMD=('; printf '%q ' "$@"; printf ')\n'
  } >"$DIR/pids/$name.cmd"
  STARTED+=("$name")
}

port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() { # wait_ready NAME PORT
  local name=$1 port=$2 deadline=$((SECONDS + READY_TIMEOUT))
  local pid
  pid=$(<"$(pid_file "$name")")
  while :; do
    # kill -0, not running_pid: until the forked subshell has run its `cd`, the fresh
    # pid's cwd is still this script's, and running_pid would call it someone else's
    kill -0 "$pid" 2>/dev/null || {
      tail_log "$name"
      die "$name exited before listening on 127.0.0.1:$port (log: $DIR/logs/$name.log)"
    }
    port_open "$port" && return 0
    [ "$SECONDS" -lt "$deadline" ] || {
      tail_log "$name"
      die "$name did not listen on 127.0.0.1:$port within ${READY_TIMEOUT}s"
    }
    sleep 0.1
  done
}

tail_log() {
  local f="$DIR/logs/$1.log"
  [ -f "$f" ] || return 0
  printf -- '----- last lines of %s -----\n' "$f" >&2
  tail -n 40 "$f" >&2 || true
  printf -- '-----\n' >&2
}

signal_member() { # signal_member SIGNAL PID
  # Each member leads its own process group (setsid), so signalling the group also
  # reaches any helper it forked, and nothing outside it.
  kill "-$1" -- "-$2" 2>/dev/null || kill "-$1" "$2" 2>/dev/null || true
}

stop_members() { # stop_members NAME... : SIGTERM all, wait, SIGKILL what is left
  local name pid left deadline=$((SECONDS + STOP_GRACE))
  local -A pids=()
  for name; do
    if pid=$(running_pid "$name"); then
      signal_member TERM "$pid"
      pids[$name]=$pid
    fi
  done
  while :; do
    left=0
    for name in "${!pids[@]}"; do
      is_ours "$name" "${pids[$name]}" && left=$((left + 1))
    done
    [ "$left" -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      for name in "${!pids[@]}"; do
        if is_ours "$name" "${pids[$name]}"; then
          log "$name (pid ${pids[$name]}) ignored SIGTERM for ${STOP_GRACE}s: SIGKILL"
          signal_member KILL "${pids[$name]}"
        fi
      done
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  for name; do
    [ -z "${pids[$name]:-}" ] || log "stopped $name (pid ${pids[$name]})"
    rm -f "$(pid_file "$name")" "$DIR/pids/$name.port"
  done
}

stop_all() {
  local names=() brokers=() metas=() rest=() name
  mapfile -t names < <(members)
  for name in "${names[@]}"; do
    case $name in
      broker-*) brokers+=("$name") ;;
      meta-*) metas+=("$name") ;;
      *) rest+=("$name") ;;
    esac
  done
  # in waves, so that brokers can still reach meta and the store while they shut down
  [ ${#brokers[@]} -eq 0 ] || stop_members "${brokers[@]}"
  [ ${#metas[@]} -eq 0 ] || stop_members "${metas[@]}"
  [ ${#rest[@]} -eq 0 ] || stop_members "${rest[@]}"
}

lock_dir() {
  exec 9>"$DIR/.lock"
  flock -w 120 9 || die "another $PROG is working on $DIR"
}

# --- start -----------------------------------------------------------------------------
find_binaries() {
  ETCD_BIN=${ETCD_BIN:-$(command -v etcd || true)}
  S3S_FS_BIN=${S3S_FS_BIN:-$(command -v s3s-fs || true)}
  [ -n "$S3S_FS_BIN" ] || { [ -x "$HOME/.cargo/bin/s3s-fs" ] && S3S_FS_BIN=$HOME/.cargo/bin/s3s-fs; } || true
  [ -x "${S3S_FS_BIN:-/nonexistent}" ] \
    || die "s3s-fs not found: run scripts/setup.sh (or set S3S_FS_BIN)"
  if [ "$BACKEND" = etcd ]; then
    [ -x "${ETCD_BIN:-/nonexistent}" ] \
      || die "etcd not found: run scripts/setup.sh (Debian package etcd-server) or set ETCD_BIN"
  fi

  if [ -n "${STRATA_BIN:-}" ]; then
    [ -x "$STRATA_BIN" ] || die "STRATA_BIN=$STRATA_BIN is not an executable"
  else
    STRATA_BIN=$REPO_ROOT/target/release/strata
    if [ ! -x "$STRATA_BIN" ]; then
      log "building $STRATA_BIN (cargo build --release -p strata)"
      (cd "$REPO_ROOT" && cargo build --release -p strata) >&2 \
        || die "cargo build --release failed"
    fi
  fi
  # an older binary has neither; better one clear line here than three crash logs later
  "$STRATA_BIN" meta --help >/dev/null 2>&1 \
    || die "$STRATA_BIN has no 'meta' subcommand (built before cluster mode?): rebuild it"
  "$STRATA_BIN" serve --help 2>/dev/null | grep -q -- '--meta' \
    || die "$STRATA_BIN serve has no --meta flag (built before cluster mode?): rebuild it"
}

START_DONE=0
on_start_exit() {
  local code=$?
  [ "$START_DONE" = 1 ] && return 0
  if [ ${#STARTED[@]} -gt 0 ]; then
    log "start failed (exit $code): stopping what was started"
    STOP_GRACE=5 stop_all || true
  fi
  return "$code"
}

write_env() {
  local f="$DIR/cluster.env"
  kv() { printf "%s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; }
  {
    echo "# written by $PROG start; source it to reach the cluster"
    kv BOOTSTRAP_SERVERS "$BOOTSTRAP_SERVERS"
    kv STRATA_META "$META_URLS"
    kv STRATA_CLUSTER_BACKEND "$BACKEND"
    kv STRATA_CLUSTER_BROKERS "$BROKERS"
    kv STRATA_CLUSTER_METAS "$METAS"
    kv STRATA_CLUSTER_BASE_PORT "$BASE_PORT"
    kv ETCD_ENDPOINTS "$ETCD_ENDPOINTS"
    kv OBJECT_STORE "s3://$BUCKET/$PREFIX"
    kv S3_BUCKET_DIR "$DIR/s3s-fs/root/$BUCKET"
    kv AWS_ENDPOINT_URL "http://127.0.0.1:$PORT_S3"
    kv AWS_ACCESS_KEY_ID "$S3_ACCESS_KEY"
    kv AWS_SECRET_ACCESS_KEY "$S3_SECRET_KEY"
    kv AWS_REGION "$S3_REGION"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

cmd_start() {
  mkdir -p "$DIR/logs" "$DIR/pids"
  DIR=$(cd "$DIR" && pwd -P)
  lock_dir

  local name
  while read -r name; do
    running_pid "$name" >/dev/null \
      && die "$name already runs from $DIR ($PROG status; $PROG stop first)"
    rm -f "$(pid_file "$name")" "$DIR/pids/$name.port"   # left by a crash
  done < <(members)
  rm -f "$DIR"/pids/*.cmd   # members of an earlier layout must not be restartable

  find_binaries

  local i port ports=("$PORT_S3")
  [ "$BACKEND" = etcd ] && ports+=("$PORT_ETCD" "$PORT_ETCD_PEER")
  for ((i = 0; i < METAS; i++)); do ports+=($((PORT_META + i))); done
  for ((i = 0; i < BROKERS; i++)); do ports+=($((PORT_BROKER + i))); done
  for port in "${ports[@]}"; do
    port_open "$port" && die "127.0.0.1:$port is in use: pick another STRATA_CLUSTER_BASE_PORT / --base-port"
  done

  BOOTSTRAP_SERVERS=""
  for ((i = 0; i < BROKERS; i++)); do
    BOOTSTRAP_SERVERS+="${BOOTSTRAP_SERVERS:+,}127.0.0.1:$((PORT_BROKER + i))"
  done
  META_URLS=""
  for ((i = 0; i < METAS; i++)); do
    META_URLS+="${META_URLS:+,}http://127.0.0.1:$((PORT_META + i))"
  done
  ETCD_ENDPOINTS=""
  [ "$BACKEND" = etcd ] && ETCD_ENDPOINTS="127.0.0.1:$PORT_ETCD"

  trap on_start_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  # object store
  mkdir -p "$DIR/s3s-fs/root/$BUCKET"
  launch s3s-fs "$PORT_S3" -- "$S3S_FS_BIN" --host 127.0.0.1 --port "$PORT_S3" \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$DIR/s3s-fs/root"

  # etcd: one member is enough to exercise the etcd backend on one machine; the
  # three-member set-up lives in deploy/k8s and deploy/compose
  if [ "$BACKEND" = etcd ]; then
    local etcd_env=()
    # etcd 3.4 refuses to start on arm64 unless told it is on purpose
    [ "$(uname -m)" = aarch64 ] && etcd_env+=(ETCD_UNSUPPORTED_ARCH=arm64)
    launch etcd "$PORT_ETCD" "${etcd_env[@]}" -- "$ETCD_BIN" \
      --name local --data-dir "$DIR/etcd/data" --logger zap --log-outputs stderr \
      --listen-client-urls "http://127.0.0.1:$PORT_ETCD" \
      --advertise-client-urls "http://127.0.0.1:$PORT_ETCD" \
      --listen-peer-urls "http://127.0.0.1:$PORT_ETCD_PEER" \
      --initial-advertise-peer-urls "http://127.0.0.1:$PORT_ETCD_PEER" \
      --initial-cluster "local=http://127.0.0.1:$PORT_ETCD_PEER" \
      --initial-cluster-state new --initial-cluster-token "strata-local-$BASE_PORT"
  fi

  wait_ready s3s-fs "$PORT_S3"
  log "s3s-fs ready on 127.0.0.1:$PORT_S3 (bucket $BUCKET in $DIR/s3s-fs/root/$BUCKET)"
  if [ "$BACKEND" = etcd ]; then
    wait_ready etcd "$PORT_ETCD"
    wait_etcd_healthy
    log "etcd ready on 127.0.0.1:$PORT_ETCD"
  fi

  # metadata service
  local strata_env=("STRATA_LOG=${STRATA_LOG:-info}" RUST_BACKTRACE=1 NO_COLOR=1)
  local meta_extra=() broker_extra=()
  # shellcheck disable=SC2206  # word-splitting these is the documented behaviour
  meta_extra=(${STRATA_CLUSTER_META_ARGS:-})
  # shellcheck disable=SC2206
  broker_extra=(${STRATA_CLUSTER_BROKER_ARGS:-})
  if [ -n "${STRATA_CLUSTER_SESSION_TIMEOUT_MS:-}" ]; then
    meta_extra=(--broker-session-timeout-ms "$STRATA_CLUSTER_SESSION_TIMEOUT_MS" "${meta_extra[@]}")
  fi
  for ((i = 1; i <= METAS; i++)); do
    port=$((PORT_META + i - 1))
    if [ "$BACKEND" = etcd ]; then
      launch "meta-$i" "$port" "${strata_env[@]}" -- "$STRATA_BIN" meta \
        --listen "127.0.0.1:$port" --backend "etcd://$ETCD_ENDPOINTS" "${meta_extra[@]}"
    else
      launch "meta-$i" "$port" "${strata_env[@]}" -- "$STRATA_BIN" meta \
        --listen "127.0.0.1:$port" --backend embedded --data-dir "$DIR/meta-$i" "${meta_extra[@]}"
    fi
  done
  for ((i = 1; i <= METAS; i++)); do
    wait_ready "meta-$i" $((PORT_META + i - 1))
  done
  log "meta ready: $META_URLS ($BACKEND backend)"

  # brokers
  local s3_env=(
    "AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY" "AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY"
    "AWS_REGION=$S3_REGION" "AWS_ENDPOINT_URL=http://127.0.0.1:$PORT_S3" AWS_ALLOW_HTTP=true
  )
  for ((i = 1; i <= BROKERS; i++)); do
    port=$((PORT_BROKER + i - 1))
    launch "broker-$i" "$port" "${strata_env[@]}" "${s3_env[@]}" -- "$STRATA_BIN" serve \
      --meta "$META_URLS" --node-id "$i" \
      --listen "127.0.0.1:$port" --advertised-listener "127.0.0.1:$port" \
      --data-dir "$DIR/broker-$i" --object-store "s3://$BUCKET/$PREFIX" \
      --cache-memory-bytes "$CACHE_MEMORY_BYTES" --cache-disk-bytes "$CACHE_DISK_BYTES" \
      "${broker_extra[@]}"
  done
  for ((i = 1; i <= BROKERS; i++)); do
    wait_ready "broker-$i" $((PORT_BROKER + i - 1))
  done
  log "brokers listening: $BOOTSTRAP_SERVERS"
  wait_brokers_visible

  write_env
  START_DONE=1
  trap - EXIT INT TERM
  log "logs in $DIR/logs, addresses in $DIR/cluster.env; stop with: $PROG stop --dir $DIR"
  printf 'BOOTSTRAP_SERVERS=%s\n' "$BOOTSTRAP_SERVERS"
}

wait_etcd_healthy() {
  # the client port opens before the single member has elected itself; meta replicas
  # started in that window would log connection errors and back off
  command -v curl >/dev/null || return 0
  local deadline=$((SECONDS + READY_TIMEOUT))
  until curl -fsS --max-time 2 "http://127.0.0.1:$PORT_ETCD/health" 2>/dev/null | grep -q '"health":"true"'; do
    running_pid etcd >/dev/null || { tail_log etcd; die "etcd exited"; }
    [ "$SECONDS" -lt "$deadline" ] || { tail_log etcd; die "etcd not healthy within ${READY_TIMEOUT}s"; }
    sleep 0.2
  done
}

wait_brokers_visible() {
  # A broker listens before its first heartbeat reaches meta. Clients only see the whole
  # cluster once every broker is registered, so wait for a metadata response listing all
  # of them. Best effort: warn (don't fail) when kcat is missing or the count never shows.
  command -v kcat >/dev/null || { log "kcat not found: not waiting for broker registration"; return 0; }
  local deadline=$((SECONDS + READY_TIMEOUT)) seen=""
  while :; do
    seen=$(kcat -b "$BOOTSTRAP_SERVERS" -L -m 3 2>/dev/null \
      | sed -n 's/^ *\([0-9][0-9]*\) brokers:.*/\1/p' | head -n 1) || true
    [ "$seen" = "$BROKERS" ] && { log "all $BROKERS brokers registered"; return 0; }
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "warning: metadata lists ${seen:-no} brokers of $BROKERS after ${READY_TIMEOUT}s (see $DIR/logs)"
      return 0
    fi
    sleep 0.3
  done
}

# --- restart ---------------------------------------------------------------------------
cmd_restart() {
  [ ${#NAMES[@]} -gt 0 ] || die "restart which members? (e.g. broker-2; see $PROG status)"
  [ -d "$DIR/pids" ] || die "no cluster in $DIR"
  DIR=$(cd "$DIR" && pwd -P)
  lock_dir
  local name M_PORT M_ENV M_CMD
  for name in "${NAMES[@]}"; do
    [ -f "$DIR/pids/$name.cmd" ] || die "$name was never started from $DIR"
  done
  stop_members "${NAMES[@]}"
  for name in "${NAMES[@]}"; do
    # shellcheck disable=SC1090  # written by launch above
    source "$DIR/pids/$name.cmd"
    port_open "$M_PORT" && die "127.0.0.1:$M_PORT is still taken after stopping $name"
    launch "$name" "$M_PORT" "${M_ENV[@]}" -- "${M_CMD[@]}"
    wait_ready "$name" "$M_PORT"
    log "$name runs again on 127.0.0.1:$M_PORT (pid $(running_pid "$name"))"
  done
}

# --- stop / status ---------------------------------------------------------------------
cmd_stop() {
  if [ ! -d "$DIR/pids" ]; then
    log "nothing to stop in $DIR"
  else
    DIR=$(cd "$DIR" && pwd -P)
    lock_dir
    stop_all
  fi
  if [ "$PURGE" = 1 ] && [ -d "$DIR" ]; then
    # only a folder this script laid out, so a mistyped --dir cannot wipe something else
    if [ ! -d "$DIR/pids" ] || [ ! -d "$DIR/logs" ]; then
      die "$DIR does not look like a local-cluster dir: not deleting it"
    fi
    rm -rf "$DIR"
    log "deleted $DIR"
  fi
}

cmd_status() {
  if [ ! -d "$DIR/pids" ]; then
    log "no cluster in $DIR"
    return 3
  fi
  DIR=$(cd "$DIR" && pwd -P)
  local names=() name pid port state up=0 down=0
  mapfile -t names < <(members)
  if [ ${#names[@]} -eq 0 ]; then
    log "nothing runs from $DIR"
    return 3
  fi
  printf '%-10s %-8s %-6s %s\n' NAME PID PORT STATE
  for name in "${names[@]}"; do
    port=$(cat "$DIR/pids/$name.port" 2>/dev/null || echo -)
    if pid=$(running_pid "$name"); then
      if port_open "$port"; then state=running; else state="running, port closed"; fi
      up=$((up + 1))
    else
      pid=$(cat "$(pid_file "$name")" 2>/dev/null || echo -)
      state="not running (log: $DIR/logs/$name.log)"
      down=$((down + 1))
    fi
    printf '%-10s %-8s %-6s %s\n' "$name" "$pid" "$port" "$state"
  done
  if [ -f "$DIR/cluster.env" ]; then
    grep '^BOOTSTRAP_SERVERS=' "$DIR/cluster.env" || true
  fi
  # 0: all up, 1: some down, 3: none up (as LSB init scripts report status)
  if [ "$down" -eq 0 ]; then return 0; fi
  if [ "$up" -eq 0 ]; then return 3; fi
  return 1
}

case $CMD in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_restart ;;
esac
