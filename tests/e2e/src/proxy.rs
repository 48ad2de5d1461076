//! A TCP proxy that plays an unreliable network in front of a broker. It
//! can re-send every Produce request: each reaches the broker twice, the
//! copy under a correlation id of the proxy's own (alternately before and
//! after the original), and the copy's response is swallowed once compared
//! with the original's. It can also lose responses and cut connections, so
//! a client retries requests the broker already took.
//!
//! Kafka frames are 4-byte big-endian lengths; a request body starts with
//! api key, api version and correlation id, a response body with the
//! correlation id. Nothing else is parsed on the way through.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, ProduceResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What the proxy saw; read it once the clients are done.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Produce requests sent twice.
    pub duplicated: AtomicU64,
    /// Pairs of responses compared.
    pub compared: AtomicU64,
    /// Pairs whose partition results (error code, base offset) differed.
    pub mismatches: Mutex<Vec<String>>,
}

/// What the proxy does to traffic; shared by its connections.
struct Control {
    duplicate_produce: bool,
    upstream: Mutex<SocketAddr>,
    lose_responses: AtomicBool,
    /// Correlation ids of copies: negative, as librdkafka counts up from 1.
    next_id: AtomicI32,
    conns: Mutex<JoinSet<()>>,
    stats: Arc<ProxyStats>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    control: Arc<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port; connections go to the address last given to
    /// [`Proxy::set_upstream`] when they are accepted.
    pub async fn start(duplicate_produce: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ProxyStats::default());
        let control = Arc::new(Control {
            duplicate_produce,
            upstream: Mutex::new(SocketAddr::from(([127, 0, 0, 1], 0))),
            lose_responses: AtomicBool::new(false),
            next_id: AtomicI32::new(-1),
            conns: Mutex::new(JoinSet::new()),
            stats: stats.clone(),
        });
        let c = control.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let to = *c.upstream.lock().unwrap();
                let conn = c.clone();
                let mut conns = c.conns.lock().unwrap();
                // Reap finished ones so the set stays small.
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    if let Ok(broker) = TcpStream::connect(to).await {
                        relay(client, broker, conn).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            stats,
            control,
            task,
        }
    }

    pub fn set_upstream(&self, addr: SocketAddr) {
        *self.control.upstream.lock().unwrap() = addr;
    }

    /// While set, requests still reach the broker but their responses are
    /// dropped, as if lost on the way back.
    pub fn lose_responses(&self, lose: bool) {
        self.control.lose_responses.store(lose, Ordering::SeqCst);
    }

    /// Closes every open connection, as a network failure would.
    pub fn cut(&self) {
        self.control.conns.lock().unwrap().abort_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// Responses of one original/copy pair, compared once both are in.
#[derive(Default)]
struct Pair {
    version: i16,
    original: Option<Bytes>,
    copy: Option<Bytes>,
}

#[derive(Default)]
struct Pairs {
    /// By the original's correlation id.
    by_original: HashMap<i32, Pair>,
    /// Copy's correlation id -> original's.
    copies: HashMap<i32, i32>,
}

async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> Option<Bytes> {
    let len = r.read_u32().await.ok()? as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.ok()?;
    Some(body.into())
}

async fn write_frame(w: &mut (impl AsyncWriteExt + Unpin), body: &[u8]) -> std::io::Result<()> {
    w.write_u32(body.len() as u32).await?;
    w.write_all(body).await
}

async fn relay(client: TcpStream, broker: TcpStream, control: Arc<Control>) {
    let (mut client_r, mut client_w) = client.into_split();
    let (mut broker_r, mut broker_w) = broker.into_split();
    let pairs = Arc::new(Mutex::new(Pairs::default()));
    let (p, c) = (pairs.clone(), control.clone());
    let upward = async move {
        let mut produced = 0u64;
        while let Some(body) = read_frame(&mut client_r).await {
            let key = (&body[0..2]).get_i16();
            if !c.duplicate_produce || key != ApiKey::Produce as i16 || body.len() < 8 {
                write_frame(&mut broker_w, &body).await?;
                continue;
            }
            let version = (&body[2..4]).get_i16();
            let original = (&body[4..8]).get_i32();
            let id = c.next_id.fetch_sub(1, Ordering::Relaxed);
            let mut copy = body.to_vec();
            copy[4..8].copy_from_slice(&id.to_be_bytes());
            {
                let mut p = p.lock().unwrap();
                p.copies.insert(id, original);
                let pair = Pair {
                    version,
                    ..Pair::default()
                };
                p.by_original.insert(original, pair);
            }
            produced += 1;
            c.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            let (first, second) = if produced.is_multiple_of(2) {
                (&copy[..], &body[..])
            } else {
                (&body[..], &copy[..])
            };
            write_frame(&mut broker_w, first).await?;
            write_frame(&mut broker_w, second).await?;
        }
        broker_w.shutdown().await
    };
    let downward = async move {
        while let Some(body) = read_frame(&mut broker_r).await {
            let id = (&body[0..4]).get_i32();
            let is_copy = note_response(&pairs, id, &body, &control.stats);
            if !is_copy && !control.lose_responses.load(Ordering::SeqCst) {
                write_frame(&mut client_w, &body).await?;
            }
        }
        client_w.shutdown().await
    };
    let _ = tokio::join!(upward, downward);
}

/// Files a response under its pair, comparing the pair once complete;
/// returns whether it answers a copy (and so must not reach the client).
fn note_response(pairs: &Mutex<Pairs>, id: i32, body: &Bytes, stats: &ProxyStats) -> bool {
    let mut p = pairs.lock().unwrap();
    let (original, is_copy) = match p.copies.get(&id) {
        Some(o) => (*o, true),
        None if p.by_original.contains_key(&id) => (id, false),
        None => return false,
    };
    let pair = p.by_original.entry(original).or_default();
    if is_copy {
        pair.copy = Some(body.clone());
    } else {
        pair.original = Some(body.clone());
    }
    if pair.copy.is_some() && pair.original.is_some() {
        if let Some(pair) = p.by_original.remove(&original) {
            p.copies.retain(|_, o| *o != original);
            compare(&pair, stats);
        }
    }
    is_copy
}

/// Per partition: (topic, partition, error code, base offset).
type Results = Vec<(String, i32, i16, i64)>;

fn results(body: &Bytes, version: i16) -> Result<Results, String> {
    let mut b = body.clone();
    let hv = ApiKey::Produce.response_header_version(version);
    ResponseHeader::decode(&mut b, hv).map_err(|e| e.to_string())?;
    let resp = ProduceResponse::decode(&mut b, version).map_err(|e| e.to_string())?;
    let mut out: Results = resp
        .responses
        .iter()
        .flat_map(|t| {
            t.partition_responses
                .iter()
                .map(|p| (t.name.0.to_string(), p.index, p.error_code, p.base_offset))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn compare(pair: &Pair, stats: &ProxyStats) {
    let (Some(o), Some(c)) = (&pair.original, &pair.copy) else {
        return;
    };
    stats.compared.fetch_add(1, Ordering::Relaxed);
    let (o, c) = (results(o, pair.version), results(c, pair.version));
    if o != c || o.is_err() {
        let mut m = stats.mismatches.lock().unwrap();
        m.push(format!("original {o:?} copy {c:?}"));
    }
}
