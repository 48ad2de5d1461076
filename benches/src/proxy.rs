//! A counting HTTP/1.1 proxy placed between a broker and the S3-protocol server.
//!
//! Object-store requests are what a bucket bills for, and the brokers we compare
//! (Strata, Tansu) do not report them the same way, if at all. Counting on the wire
//! treats every broker alike. Bytes pass through unchanged, so SigV4 signatures (which
//! cover the Host header the client chose) still verify at the server.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Requests seen so far, by class, and how long each PUT-class request took.
#[derive(Default)]
pub struct Counts {
    puts: AtomicU64,
    gets: AtomicU64,
    other: AtomicU64,
    put_us: Mutex<Vec<u32>>,
}

/// A copy of [`Counts`] at one moment; subtract two to get a phase's figures.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub puts: u64,
    pub gets: u64,
    pub other: u64,
    pub put_us: Vec<u32>,
}

impl Counts {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            puts: self.puts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            put_us: self.put_us.lock().unwrap().clone(),
        }
    }
}

impl Snapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            puts: self.puts - earlier.puts,
            gets: self.gets - earlier.gets,
            other: self.other - earlier.other,
            put_us: self.put_us[earlier.put_us.len().min(self.put_us.len())..].to_vec(),
        }
    }
}

/// Listens on a free loopback port and forwards every connection to `upstream`.
pub fn start(upstream: SocketAddr) -> io::Result<(SocketAddr, Arc<Counts>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let counts = shared.clone();
            std::thread::spawn(move || {
                // A connection ends on EOF or on any error; the client sees the close
                // and retries, as it would with a real server.
                if let Err(e) = serve(client, upstream, &counts) {
                    if std::env::var_os("STRATA_BENCH_PROXY_DEBUG").is_some() {
                        eprintln!("proxy: connection ended: {e}");
                    }
                }
            });
        }
    });
    Ok((addr, counts))
}

#[derive(PartialEq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    bytes: Vec<u8>,
    first_line: String,
    body: Body,
}

/// Reads one message head (start line and headers). `None` on a clean EOF.
fn read_head(r: &mut impl BufRead, is_request: bool) -> io::Result<Option<Head>> {
    let mut bytes = Vec::with_capacity(1024);
    let mut first_line = String::new();
    let mut length = None;
    let mut chunked = false;
    loop {
        let start = bytes.len();
        let n = r.read_until(b'\n', &mut bytes)?;
        if n == 0 {
            if bytes.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = String::from_utf8_lossy(&bytes[start..])
            .trim_end()
            .to_string();
        if start == 0 {
            first_line = line;
            continue;
        }
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            }
        }
    }
    let body = match (chunked, length) {
        (true, _) => Body::Chunked,
        (false, Some(n)) => Body::Length(n),
        (false, None) if is_request => Body::None,
        (false, None) => Body::UntilClose,
    };
    Ok(Some(Head {
        bytes,
        first_line,
        body,
    }))
}

fn copy_body(r: &mut impl BufRead, w: &mut impl Write, body: &Body) -> io::Result<()> {
    match body {
        Body::None => Ok(()),
        Body::Length(n) => {
            let copied = io::copy(&mut r.take(*n), w)?;
            if copied != *n {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(())
        }
        Body::UntilClose => io::copy(r, w).map(|_| ()),
        Body::Chunked => loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line)?;
            w.write_all(&line)?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the blank line that ends the message.
                loop {
                    let mut t = Vec::new();
                    r.read_until(b'\n', &mut t)?;
                    w.write_all(&t)?;
                    if t == b"\r\n" || t == b"\n" || t.is_empty() {
                        return Ok(());
                    }
                }
            }
            let copied = io::copy(&mut r.take(size + 2), w)?;
            if copied != size + 2 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        },
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, counts: &Counts) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let mut from_client = BufReader::with_capacity(256 << 10, client.try_clone()?);
    let mut to_client = client;
    let mut from_server = BufReader::with_capacity(256 << 10, server.try_clone()?);
    let mut to_server = io::BufWriter::with_capacity(256 << 10, server);
    while let Some(req) = read_head(&mut from_client, true)? {
        let started = Instant::now();
        let method = req.first_line.split(' ').next().unwrap_or("").to_string();
        to_server.write_all(&req.bytes)?;
        copy_body(&mut from_client, &mut to_server, &req.body)?;
        to_server.flush()?;
        let mut out = io::BufWriter::with_capacity(256 << 10, &mut to_client);
        loop {
            let resp = read_head(&mut from_server, false)?
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            let status: u16 = resp
                .first_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            out.write_all(&resp.bytes)?;
            if (100..200).contains(&status) {
                continue;
            }
            let body = if method == "HEAD" || status == 204 || status == 304 {
                Body::None
            } else {
                resp.body
            };
            copy_body(&mut from_server, &mut out, &body)?;
            break;
        }
        out.flush()?;
        drop(out);
        match method.as_str() {
            "PUT" | "POST" => {
                counts.puts.fetch_add(1, Ordering::Relaxed);
                let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                counts.put_us.lock().unwrap().push(us);
            }
            "GET" if !req.first_line.contains("list-type=") => {
                counts.gets.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                counts.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}
