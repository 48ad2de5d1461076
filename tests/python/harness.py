"""Processes and stores the end-to-end tests run against: the strata broker, s3s-fs and
moto's S3 server, each started as a plain process on 127.0.0.1, and a uniform view of
the objects a broker wrote (local folder or S3 bucket)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = float(os.environ.get("STRATA_READY_TIMEOUT", "60"))


try:
    import ctypes

    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """Runs in the child before exec (keep it tiny): SIGKILL the child if the test process
    dies, so a killed test run leaves no broker or S3 server behind."""
    if _LIBC is not None:
        _LIBC.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 80) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, what: str,
                  timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode} before listening on {port}; "
                f"log tail:\n{tail(log)}")
        if port_open(port):
            return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s; log tail:\n{tail(log)}")


def stop_process(proc: subprocess.Popen | None, grace: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


# ---------------------------------------------------------------------------------------
# Object stores


def s3_client(endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1"):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            # Newer botocore adds CRC trailers by default; plain requests suit every server.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


class S3Server:
    """An S3-protocol server process (s3s-fs or moto) with one bucket."""

    kind = "s3"
    region = "us-east-1"

    def __init__(self, workdir: Path, bucket: str, access_key: str, secret_key: str):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / f"{self.kind}.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> "S3Server":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir,
                                         preexec_fn=_die_with_parent)
        wait_for_port(self.port, self.proc, self.log_path, self.kind)
        return self

    def stop(self) -> None:
        stop_process(self.proc, grace=5)
        self.proc = None

    def client(self):
        return s3_client(self.endpoint, self.access_key, self.secret_key, self.region)

    def env(self) -> dict[str, str]:
        """The AWS variables a broker needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"


class S3sFs(S3Server):
    """s3s-fs: keeps objects as files under its root (one folder per bucket) and checks
    SigV4 signatures against the one key pair it is given."""

    kind = "s3s-fs"

    def __init__(self, workdir: Path, bucket: str = "strata"):
        super().__init__(workdir, bucket, "strata-test-key", "strata-test-secret-0123456789")
        self.root = self.workdir / "root"
        (self.root / bucket).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        binary = os.environ.get("S3S_FS_BIN") or shutil.which("s3s-fs") or str(
            Path.home() / ".cargo" / "bin" / "s3s-fs")
        return [binary, "--host", "127.0.0.1", "--port", str(self.port),
                "--access-key", self.access_key, "--secret-key", self.secret_key,
                str(self.root)]


class Moto(S3Server):
    """moto's standalone server (in memory; accepts any credentials)."""

    kind = "moto"

    def __init__(self, workdir: Path, bucket: str = "strata"):
        super().__init__(workdir, bucket, "testing", "testing")

    def command(self) -> list[str]:
        python = os.environ.get("STRATA_PYTHON", sys.executable)
        return [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def start(self) -> "Moto":
        super().start()
        self.client().create_bucket(Bucket=self.bucket)
        return self


class ObjectView:
    """The objects a broker wrote, wherever its store is, keyed relative to the broker's
    store root (so `wal/...`, `topics/<t>/<p>/<offset>.parquet`)."""

    def __init__(self, local_root: Path | None = None, s3: S3Server | None = None,
                 prefix: str = ""):
        self.local_root = local_root
        self.s3 = s3
        self.prefix = prefix.strip("/")

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def keys(self, under: str = "") -> list[str]:
        if self.s3 is None:
            base = self.local_root
            if base is None or not base.exists():
                return []
            found = []
            for path in base.rglob("*"):
                if path.is_file() and "#" not in path.name:  # object_store temp files
                    rel = path.relative_to(base).as_posix()
                    if rel.startswith(under):
                        found.append(rel)
            return sorted(found)
        client = self.s3.client()
        found = []
        token = None
        want = self._full(under)
        while True:
            kwargs = {"Bucket": self.s3.bucket, "Prefix": want}
            if token:
                kwargs["ContinuationToken"] = token
            page = client.list_objects_v2(**kwargs)
            for obj in page.get("Contents", []):
                key = obj["Key"]
                found.append(key[len(self.prefix) + 1:] if self.prefix else key)
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        return sorted(found)

    def read(self, key: str) -> bytes:
        if self.s3 is None:
            return (self.local_root / key).read_bytes()
        body = self.s3.client().get_object(Bucket=self.s3.bucket, Key=self._full(key))["Body"]
        return body.read()

    def describe(self) -> str:
        if self.s3 is None:
            return f"local folder {self.local_root}"
        return f"{self.s3.kind} bucket {self.s3.bucket}/{self.prefix}"


# ---------------------------------------------------------------------------------------
# The broker


def strata_binary() -> Path:
    return Path(os.environ.get("STRATA_BIN") or REPO_ROOT / "target" / "release" / "strata")


class Strata:
    """One `strata serve` process. Survives restarts: same port, same data dir."""

    def __init__(self, workdir: Path, name: str = "strata", s3: S3Server | None = None,
                 prefix: str = "cluster", wal_flush_ms: int = 5,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.name = name
        self.data_dir = self.workdir / f"{name}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{name}.log"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.s3 = s3
        self.prefix = prefix if s3 is not None else ""
        self.wal_flush_ms = wal_flush_ms
        self.extra_args = list(extra_args or [])
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # paths named by the issue: DIR/meta, DIR/cache, DIR/objects
    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def meta_dir(self) -> Path:
        return self.data_dir / "meta"

    @property
    def objects(self) -> ObjectView:
        if self.s3 is None:
            return ObjectView(local_root=self.data_dir / "objects")
        return ObjectView(s3=self.s3, prefix=self.prefix)

    def command(self) -> list[str]:
        cmd = [str(strata_binary()), "serve", "--listen", self.bootstrap,
               "--data-dir", str(self.data_dir), "--wal-flush-ms", str(self.wal_flush_ms)]
        if self.s3 is not None:
            cmd += ["--object-store", self.s3.url(self.prefix)]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("AWS_") and k not in ("AWS_CA_BUNDLE",))
               and not k.startswith("STRATA_")}
        env.setdefault("RUST_LOG", os.environ.get("STRATA_TEST_RUST_LOG", "info"))
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        if self.s3 is not None:
            env.update(self.s3.env())
        env.update(self.extra_env)
        return env

    def start(self) -> "Strata":
        binary = strata_binary()
        if not binary.exists():
            raise RuntimeError(
                f"strata binary not found at {binary}: run `cargo build --release` "
                "or set STRATA_BIN")
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.environment(),
                                         cwd=self.workdir, preexec_fn=_die_with_parent)
        wait_for_port(self.port, self.proc, self.log_path, f"strata ({self.name})")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM (a clean shutdown flushes what is pending)."""
        code = stop_process(self.proc, grace)
        self._note(f"stopped (exit {code})")
        return code

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._note("killed with SIGKILL")

    def restart(self, drop_cache: bool = False) -> "Strata":
        if self.alive():
            self.stop()
        if drop_cache:
            self.drop_cache()
        return self.start()

    def drop_cache(self) -> None:
        assert not self.alive(), "drop the cache of a stopped broker only"
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self._note("cache dir deleted")

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def _note(self, what: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"===== harness: {what}\n".encode())
