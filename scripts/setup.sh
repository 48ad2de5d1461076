#!/usr/bin/env bash
# Installs everything Strata's tests need on a fresh Debian 12 machine (run as root, or
# with sudo available). Idempotent: whatever is already present is skipped, so a second
# run takes seconds.
#
#   apt:    kcat, build tools and headers for native crates (librdkafka, openssl, zlib),
#           a JDK 17 and Maven for tests/java, etcd (etcd-server, and etcd-client's etcdctl) for
#           cluster tests
#   pip:    the pinned packages in tests/python/requirements.txt (clients, pyarrow,
#           duckdb, moto's S3 server, boto3, pytest)
#   cargo:  s3s-fs 0.14.1, the S3-protocol server the end-to-end tests run against
#   maven:  tests/java's dependencies, fetched ahead of the test run
#   npm:    tests/js's locked packages (KafkaJS), `npm ci` into tests/js/node_modules;
#           Node.js and npm themselves from apt when the machine has none
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$(pwd)
PYTHON=${STRATA_PYTHON:-python3}
S3S_FS_VERSION=0.14.1

export DEBIAN_FRONTEND=noninteractive
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Debian packages ------------------------------------------------------------------
APT_PACKAGES=(
  kcat                      # command-line Kafka client used by tests/python/test_kcat.py
  build-essential pkg-config cmake  # native builds (librdkafka inside rdkafka-sys, ring)
  libssl-dev zlib1g-dev librdkafka-dev
  openjdk-17-jdk-headless maven     # tests/java
  etcd-server               # `etcd` for the metadata service's etcd backend (deploy/local-cluster.sh, strata-meta tests/etcd.rs)
  etcd-client               # `etcdctl`, which tests/etcd.rs uses to plant keys a dead replica left behind
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt: all ${#APT_PACKAGES[@]} packages present"
fi

# --- Rust toolchain (must come with the machine: rustup is not a package registry) -----
if ! command -v cargo >/dev/null; then
  echo "[setup] cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
fi

# --- Python packages -------------------------------------------------------------------
REQS="$REPO_ROOT/tests/python/requirements.txt"
pip_ok() {
  "$PYTHON" - "$REQS" <<'PY'
import re, sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line).groups()
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(f"[setup] pip: {name} is {have}, want {want}")
        ok = False
try:
    import moto.server, flask  # noqa: F401  (the [server] extra)
except Exception as e:
    print(f"[setup] pip: moto server not importable: {e}")
    ok = False
sys.exit(0 if ok else 1)
PY
}
if pip_ok; then
  log "pip: all pinned packages present"
else
  log "pip: installing tests/python/requirements.txt"
  "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$REQS"
  pip_ok
fi

# --- s3s-fs (an S3-protocol server keeping objects on disk, checking signatures) --------
if command -v s3s-fs >/dev/null; then
  log "s3s-fs: present ($(command -v s3s-fs))"
else
  log "s3s-fs: cargo install s3s-fs $S3S_FS_VERSION (a few minutes)"
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --quiet
fi

# --- Maven dependencies of tests/java ----------------------------------------------------
M2_REPO="${M2_REPO:-$HOME/.m2/repository}"
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' tests/java/pom.xml)
if [ -f "$M2_REPO/org/apache/kafka/kafka-tools/$KAFKA_VERSION/kafka-tools-$KAFKA_VERSION.jar" ]; then
  log "maven: dependencies present (kafka $KAFKA_VERSION)"
else
  log "maven: fetching tests/java dependencies (kafka $KAFKA_VERSION)"
  # (surefire's JUnit provider still comes on the first `mvn test`)
  mvn -q -B -ntp -f tests/java/pom.xml dependency:go-offline
fi

# --- Node.js and tests/js's npm packages ---------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  # (a machine with a Node.js from elsewhere keeps it: Debian's npm would conflict with it)
  log "apt: installing nodejs npm"
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
npm_ok() {
  # every package of tests/js/package-lock.json installed at its locked version
  node - "$REPO_ROOT/tests/js" <<'JS'
const fs = require('fs');
const path = require('path');
const dir = process.argv[2];
const lock = JSON.parse(fs.readFileSync(path.join(dir, 'package-lock.json'), 'utf8'));
let ok = true;
for (const [where, pkg] of Object.entries(lock.packages || {})) {
  if (!where) continue;
  let have = null;
  try {
    have = JSON.parse(fs.readFileSync(path.join(dir, where, 'package.json'), 'utf8')).version;
  } catch (e) { /* missing */ }
  if (have !== pkg.version) {
    console.log(`[setup] npm: ${where} is ${have}, want ${pkg.version}`);
    ok = false;
  }
}
process.exit(ok ? 0 : 1);
JS
}
if npm_ok; then
  log "npm: tests/js packages present"
else
  log "npm: npm ci in tests/js"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
  npm_ok
fi

log "done"
