//! The brokers a benchmark runs against, each started fresh as a plain process on
//! loopback: Strata (S3-protocol server or local filesystem), Tansu (S3-protocol server
//! or memory), Apache Kafka (KRaft, assembled from Maven Central), the null sink, and the
//! null sink writing what it is sent to the S3-protocol server (the store sink) or to
//! the local filesystem (the local sink).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::proxy::{self, Counts};

/// Credentials s3s-fs checks SigV4 signatures against; the bucket is a folder under its root.
pub const S3_KEY: &str = "strata-bench-key";
pub const S3_SECRET: &str = "strata-bench-secret-0123456789";
pub const BUCKET: &str = "bench";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    StrataS3,
    StrataLocal,
    TansuS3,
    TansuMemory,
    Kafka,
    NullSink,
    StoreSink,
    LocalSink,
}

impl Kind {
    pub fn all() -> [Kind; 8] {
        [
            Kind::StrataS3,
            Kind::StrataLocal,
            Kind::TansuS3,
            Kind::TansuMemory,
            Kind::Kafka,
            Kind::NullSink,
            Kind::StoreSink,
            Kind::LocalSink,
        ]
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::StrataS3 => "strata-s3",
            Kind::StrataLocal => "strata-local",
            Kind::TansuS3 => "tansu-s3",
            Kind::TansuMemory => "tansu-memory",
            Kind::Kafka => "kafka",
            Kind::NullSink => "null-sink",
            Kind::StoreSink => "store-sink",
            Kind::LocalSink => "local-sink",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Kind> {
        Kind::all()
            .into_iter()
            .find(|k| k.name() == s)
            .with_context(|| format!("unknown target {s:?}"))
    }

    /// The null sink, alone or writing what it is sent.
    pub fn is_sink(self) -> bool {
        matches!(self, Kind::NullSink | Kind::StoreSink | Kind::LocalSink)
    }

    fn uses_s3(self) -> bool {
        matches!(self, Kind::StrataS3 | Kind::TansuS3 | Kind::StoreSink)
    }
}

/// Where the programs under test are.
#[derive(Clone, Debug)]
pub struct Programs {
    pub strata: PathBuf,
    pub null_sink: PathBuf,
    pub tansu: PathBuf,
    pub kafka_sh: PathBuf,
    pub s3s_fs: PathBuf,
    pub wal_flush_ms: u64,
    pub cache_memory_bytes: u64,
}

/// An s3s-fs process behind a counting proxy.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub counts: Arc<Counts>,
    _root: tempfile::TempDir,
}

impl S3Server {
    pub fn start(s3s_fs: &Path) -> anyhow::Result<S3Server> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir_all(root.path().join(BUCKET))?;
        let port = free_port()?;
        let child = Command::new(s3s_fs)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", s3s_fs.display()))?;
        let upstream: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut server = S3Server {
            child,
            endpoint: String::new(),
            counts: Arc::new(Counts::default()),
            _root: root,
        };
        wait_listening(&upstream.to_string(), Duration::from_secs(20))?;
        let (addr, counts) = proxy::start(upstream)?;
        server.endpoint = format!("http://{addr}");
        server.counts = counts;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One broker under test, with what it needs (its data folder, its object store).
pub struct Running {
    pub kind: Kind,
    pub addr: String,
    child: Child,
    pub s3: Option<S3Server>,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Running {
    pub fn start(kind: Kind, programs: &Programs) -> anyhow::Result<Running> {
        let dir = tempfile::tempdir()?;
        let s3 = if kind.uses_s3() {
            Some(S3Server::start(&programs.s3s_fs)?)
        } else {
            None
        };
        let mut run = Running {
            kind,
            addr: String::new(),
            child: Command::new("true").spawn()?,
            s3,
            dir,
            log: PathBuf::new(),
        };
        run.spawn(programs)?;
        Ok(run)
    }

    /// Starts (or restarts) the broker process over the same data folder and store. A
    /// broker that exits before it listens is started again on a new port, twice at
    /// most: the port picked for it may be taken by another socket before it binds.
    pub fn spawn(&mut self, programs: &Programs) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.spawn_once(programs) {
                Err(e) if tries < 3 && matches!(self.child.try_wait(), Ok(Some(_))) => {
                    eprintln!("{e:#}\nstarting it again");
                }
                other => return other,
            }
        }
    }

    fn spawn_once(&mut self, programs: &Programs) -> anyhow::Result<()> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let data = self.dir.path();
        self.log = self.log_path();
        let log = std::fs::File::create(&self.log)?;
        let mut cmd = match self.kind {
            Kind::StrataS3 | Kind::StrataLocal => {
                let mut c = Command::new(&programs.strata);
                c.args(["serve", "--listen", &addr, "--data-dir"])
                    .arg(data.join("strata"))
                    .args(["--wal-flush-ms", &programs.wal_flush_ms.to_string()])
                    .args([
                        "--cache-memory-bytes",
                        &programs.cache_memory_bytes.to_string(),
                    ])
                    .env(
                        "STRATA_LOG",
                        std::env::var("STRATA_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
                    );
                if self.kind == Kind::StrataS3 {
                    c.args(["--object-store", &format!("s3://{BUCKET}/strata")]);
                }
                c
            }
            Kind::TansuS3 | Kind::TansuMemory => {
                let mut c = Command::new(&programs.tansu);
                let engine = if self.kind == Kind::TansuS3 {
                    format!("s3://{BUCKET}/")
                } else {
                    "memory://tansu/".to_string()
                };
                c.arg("broker")
                    .env("CLUSTER_ID", "strata-bench")
                    .env("LISTENER_URL", format!("tcp://{addr}"))
                    .env("ADVERTISED_LISTENER_URL", format!("tcp://{addr}"))
                    .env("STORAGE_ENGINE", engine)
                    .env("RUST_LOG", "warn");
                c
            }
            Kind::Kafka => {
                let mut c = Command::new("bash");
                c.arg(&programs.kafka_sh)
                    .arg("start")
                    .arg(data.join("kafka"))
                    .arg(port.to_string());
                c
            }
            Kind::NullSink => {
                let mut c = Command::new(&programs.null_sink);
                c.args(["--listen", &addr]);
                c
            }
            Kind::StoreSink | Kind::LocalSink => {
                let store = match self.kind {
                    Kind::StoreSink => format!("s3://{BUCKET}/sink"),
                    _ => format!("file://{}", data.join("sink").display()),
                };
                let mut c = Command::new(&programs.null_sink);
                c.args(["--listen", &addr])
                    .args(["--store", &store])
                    .args(["--flush-ms", &programs.wal_flush_ms.to_string()]);
                c
            }
        };
        if let Some(s3) = &self.s3 {
            s3.env(&mut cmd);
        }
        let child = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.kind.name()))?;
        let _ = self.child.wait();
        self.child = child;
        self.addr = addr;
        // A broker that exits is reported at once, with its log: the data folder (and
        // the log in it) goes when the run ends.
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(&self.addr).is_err() {
            let problem = match self.child.try_wait()? {
                Some(status) => format!("it exited ({status})"),
                None if Instant::now() > deadline => {
                    format!("nothing listening on {} after 120 s", self.addr)
                }
                None => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            bail!(
                "{} did not start: {problem}; its log ({}) ends:\n{}",
                self.kind.name(),
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the broker to stop (SIGTERM, so it flushes) and waits for it; a broker
    /// already stopped is left alone (its pid may belong to another process by now).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("{} did not stop within 60 s of SIGTERM", self.kind.name());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The broker's output: in its data folder, or under `STRATA_BENCH_LOG_DIR` (kept
    /// after the run) when that is set.
    fn log_path(&self) -> PathBuf {
        let name = format!("{}.log", self.kind.name());
        match std::env::var_os("STRATA_BENCH_LOG_DIR") {
            Some(dir) => {
                let _ = std::fs::create_dir_all(&dir);
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                PathBuf::from(dir).join(format!("{stamp}-{name}"))
            }
            None => self.dir.path().join(name),
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; fields are counted after its closing ')'.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / clock_ticks(),
        _ => f64::NAN,
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Peak resident memory of a process (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(addr: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listening on {addr} after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
