//! Starts moto's S3 server (`python3 -m moto.server`) as a child process on 127.0.0.1,
//! so tests speak the real S3 protocol without Docker or credentials. Killed on drop.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::S3Options;

/// How long moto gets to start answering; its first start imports a lot of Python.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto S3 server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
}

impl MotoServer {
    /// Starts moto on a free port and waits until it answers HTTP. Panics with the reason
    /// when it cannot: a test that needs S3 must fail, not pass without it. The Python
    /// interpreter is `$STRATA_PYTHON`, else `python3`.
    pub async fn start() -> MotoServer {
        let python = std::env::var("STRATA_PYTHON").unwrap_or_else(|_| "python3".into());
        let check_python = python.clone();
        let check = tokio::task::spawn_blocking(move || {
            Command::new(&check_python)
                .args(["-c", "import moto.server"])
                .output()
        })
        .await
        .expect("moto import check panicked");
        match check {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "moto server is not installed for {python} (pip install 'moto[server]'): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(err) => panic!("cannot run {python} to start moto: {err}"),
        }

        let port = free_port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            // moto logs every request; an unread pipe would fill and block it.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start moto server with {python}: {err}"));
        let mut server = MotoServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto server exited during startup with {status}");
            }
            if let Ok(status) = http(self.addr, "GET", "/moto-api/").await {
                if status < 500 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "moto server did not answer on {} within {STARTUP_TIMEOUT:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) {
        let status = http(self.addr, "PUT", &format!("/{bucket}"))
            .await
            .unwrap_or_else(|err| panic!("create bucket {bucket}: {err}"));
        assert!(
            (200..300).contains(&status),
            "create bucket {bucket}: http status {status}"
        );
    }

    /// Options reaching `bucket`/`prefix` on this server with dummy credentials.
    pub fn s3_options(&self, bucket: &str, prefix: &str) -> S3Options {
        S3Options {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            session_token: None,
            sign_payload: false,
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // The port is released before moto binds it; a clash is possible but rare, and shows
    // up as moto exiting during startup.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// One bodiless HTTP/1.1 request; returns the status code.
async fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response timed out"))??;
    let head = String::from_utf8_lossy(&response);
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad http response: {head:.80}")))
}
