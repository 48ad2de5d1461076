//! A real single-member etcd for tests: free ports on 127.0.0.1 and a
//! private data directory, removed on drop. It can be killed (SIGKILL) and
//! restarted on the same data, to test what a metadata restart keeps.
//!
//! The `etcd` binary comes from PATH (Debian's etcd-server package, which
//! scripts/setup.sh installs) unless `STRATA_ETCD_BIN` names another.

use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a starting etcd gets to answer its health check.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub struct EtcdServer {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdServer {
    /// Starts etcd and waits until it is healthy.
    pub async fn start() -> io::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("strata-etcd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            dir,
            client_port: free_port()?,
            peer_port: free_port()?,
        };
        server.spawn()?;
        server.wait_healthy().await?;
        Ok(server)
    }

    /// The client URL, for `EtcdMetadata::connect`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd with SIGKILL, as a crash would; its data stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data directory.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_healthy().await
    }

    fn spawn(&mut self) -> io::Result<()> {
        let bin = std::env::var("STRATA_ETCD_BIN").unwrap_or_else(|_| "etcd".to_string());
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let child = Command::new(&bin)
            .arg("--name=strata-test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=strata-test={peer}"))
            // Short raft timings keep etcd's minimum lease TTL at one second,
            // so session expiry is quick to test.
            .args(["--heartbeat-interval=50", "--election-timeout=500"])
            .args(["--logger=zap", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {bin}: {e}")))?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_healthy(&mut self) -> io::Result<()> {
        let start = tokio::time::Instant::now();
        loop {
            if self.healthy().await {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
                return Err(io::Error::other(format!("etcd exited ({status}): {log}")));
            }
            if start.elapsed() > START_DEADLINE {
                return Err(io::Error::other("etcd did not become healthy"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// etcd's client port answers plain HTTP too; `/health` says whether it
    /// has a leader and serves requests.
    async fn healthy(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.client_port)).await
        else {
            return false;
        };
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut body = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut body)).await;
        matches!(read, Ok(Ok(_))) && String::from_utf8_lossy(&body).contains("\"health\":\"true\"")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
