//! A "null sink": the smallest Kafka-protocol server that librdkafka will
//! produce to and consume from, used as the ceiling in throughput benchmarks.
//! It stores nothing: produced data is counted and dropped, and fetches are
//! answered from one kept batch per partition with its base offset rewritten.
//! Whatever rate a client reaches against it is the limit of the client and
//! the machine, not of a broker.
//!
//! With `--store` it becomes the "store sink": every produced byte is also
//! written to that object store, all partitions' bytes in one object per
//! `--flush-ms` or every `--flush-bytes`, whichever comes first (up to four
//! objects in flight by default; all three defaults are Strata's WAL's), and an
//! acks=all produce is answered once its bytes are stored. That is the least
//! any broker keeping its data in the store has to do, so its rate is the
//! ceiling of client, machine and store together.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::*;
use kafka_protocol::messages::metadata_response::*;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use object_store::{path::Path, ObjectStore, PutPayload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::MissedTickBehavior;

#[derive(Parser)]
#[command(about = "Kafka-protocol server that discards produced data (benchmark ceiling)")]
struct Args {
    /// Address to listen on; it is also the address advertised in metadata.
    #[arg(long)]
    listen: SocketAddr,
    /// Partition count for topics not created through CreateTopics.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Also write produced bytes to this object store (as `strata serve
    /// --object-store` takes it, e.g. `s3://bucket/prefix` with the AWS_*
    /// variables); acks=all is answered once they are stored.
    #[arg(long)]
    store: Option<String>,
    /// With --store: how often pending bytes are written, like wal.flush.ms.
    #[arg(long, default_value_t = 5)]
    flush_ms: u64,
    /// With --store: objects written at once (Strata's WAL writes four).
    #[arg(long, default_value_t = 4)]
    puts_in_flight: usize,
    /// With --store: pending bytes that start a flush before --flush-ms is up,
    /// like Strata's wal_flush_bytes.
    #[arg(long, default_value_t = 4 << 20)]
    flush_bytes: usize,
}

/// Every API and version range served; anything else closes the connection.
/// Fetch stops at v12 because v13+ names topics by id.
const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::FindCoordinator, 0, 4),
];
const MAX_FRAME: usize = 256 << 20;
/// Size of a v2 RecordBatch header; `records count` is its last field.
const BATCH_HEADER: usize = 61;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;
const NODE: i32 = 1;

#[derive(Default)]
struct Part {
    /// Records produced so far: the next base offset and the high watermark.
    count: AtomicI64,
    /// The largest batch (by records) produced here so far; fetches are served from
    /// copies of it. Not the first one: a producer's first batch is often a single
    /// record, and serving a million one-record batches measures the client's
    /// per-batch cost rather than the ceiling.
    template: Mutex<Option<Bytes>>,
    template_records: AtomicI64,
}

struct Topic {
    parts: Vec<Part>,
}

impl Topic {
    fn part(&self, index: i32) -> Option<&Part> {
        self.parts.get(usize::try_from(index).ok()?)
    }

    fn hw(&self, index: i32) -> i64 {
        self.part(index)
            .map_or(0, |p| p.count.load(Ordering::Acquire))
    }
}

struct State {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    default_partitions: i32,
    host: StrBytes,
    port: i32,
    /// Wakes fetches waiting at the high watermark after any produce.
    produced: Notify,
    /// With --store: where produced bytes wait for their flush.
    wal: Option<Arc<Wal>>,
}

/// The --store write path: produced bytes wait here for the next flush.
struct Wal {
    store: Arc<dyn ObjectStore>,
    pending: Mutex<Pending>,
    /// Every flush numbered below this is stored; flushes complete in order.
    stored_below: AtomicU64,
    stored: Notify,
    /// Pending bytes that start a flush at once, and the wake-up for it.
    flush_bytes: usize,
    full: Notify,
}

#[derive(Default)]
struct Pending {
    chunks: Vec<Bytes>,
    bytes: usize,
    /// The number of the flush that will take `chunks`.
    next_flush: u64,
}

impl Wal {
    /// Queues bytes for the next flush and returns that flush's number.
    fn push(&self, data: Bytes) -> u64 {
        let mut p = self.pending.lock().unwrap();
        let before = p.bytes;
        p.bytes += data.len();
        p.chunks.push(data);
        if before < self.flush_bytes && p.bytes >= self.flush_bytes {
            self.full.notify_one();
        }
        p.next_flush
    }

    fn is_stored(&self, flush: u64) -> bool {
        flush < self.stored_below.load(Ordering::Acquire)
    }

    /// Writes what is pending as one object `every` after the last flush
    /// started, or sooner once `flush_bytes` are pending, with at most
    /// `in_flight` objects in flight: while all are busy, bytes keep gathering
    /// and the next object is larger.
    async fn run(self: Arc<Self>, every: Duration, in_flight: usize) {
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let done = Arc::new(Mutex::new(BTreeSet::new()));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.full.notified() => {}
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (chunks, flush) = {
                let mut p = self.pending.lock().unwrap();
                if p.chunks.is_empty() {
                    continue;
                }
                p.next_flush += 1;
                p.bytes = 0;
                (std::mem::take(&mut p.chunks), p.next_flush - 1)
            };
            tick.reset();
            let (wal, done) = (self.clone(), done.clone());
            tokio::spawn(async move {
                let path = Path::from(format!("sink/{flush:020}"));
                let payload: PutPayload = chunks.into_iter().collect();
                // Acknowledged acks=1 bytes must not be dropped, so a failed
                // PUT is tried again rather than skipped.
                while let Err(e) = wal.store.put(&path, payload.clone()).await {
                    eprintln!("PUT {path} failed, trying again: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                drop(slot);
                let mut done = done.lock().unwrap();
                done.insert(flush);
                let mut below = wal.stored_below.load(Ordering::Acquire);
                while done.remove(&below) {
                    below += 1;
                }
                wal.stored_below.store(below, Ordering::Release);
                drop(done);
                wal.stored.notify_waiters();
            });
        }
    }
}

impl State {
    /// Every topic exists: one never seen gets `partitions`, or the default.
    fn topic(&self, name: &str, partitions: Option<i32>) -> Arc<Topic> {
        let mut topics = self.topics.lock().unwrap();
        if let Some(t) = topics.get(name) {
            return t.clone();
        }
        let n = partitions.unwrap_or(self.default_partitions).max(1);
        let parts = (0..n).map(|_| Part::default()).collect();
        let t = Arc::new(Topic { parts });
        topics.insert(name.to_string(), t.clone());
        t
    }
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn decode<T: Decodable>(mut body: Bytes, version: i16) -> Result<T> {
    std::panic::catch_unwind(move || T::decode(&mut body, version))
        .map_err(|_| anyhow!("decoder panicked"))?
}

fn api_versions() -> Vec<ApiVersion> {
    let api = |&(k, min, max): &(ApiKey, i16, i16)| {
        let a = ApiVersion::default().with_api_key(k as i16);
        a.with_min_version(min).with_max_version(max)
    };
    APIS.iter().map(api).collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    let wal = match &args.store {
        Some(spec) => {
            let store = strata_store::open_store(spec, std::path::Path::new("."))?;
            let every = Duration::from_millis(args.flush_ms.max(1));
            Some(Wal::start(
                store,
                every,
                args.flush_bytes,
                args.puts_in_flight,
            ))
        }
        None => None,
    };
    serve(listener, args.partitions, wal).await
}

impl Wal {
    fn start(
        store: Arc<dyn ObjectStore>,
        every: Duration,
        flush_bytes: usize,
        in_flight: usize,
    ) -> Arc<Wal> {
        let wal = Arc::new(Wal {
            store,
            pending: Mutex::default(),
            stored_below: AtomicU64::new(0),
            stored: Notify::new(),
            flush_bytes: flush_bytes.max(1),
            full: Notify::new(),
        });
        tokio::spawn(wal.clone().run(every, in_flight));
        wal
    }
}

/// Answers every connection `listener` accepts, until accepting fails.
async fn serve(listener: TcpListener, partitions: i32, wal: Option<Arc<Wal>>) -> Result<()> {
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        topics: Mutex::new(HashMap::new()),
        default_partitions: partitions.max(1),
        host: StrBytes::from_string(addr.ip().to_string()),
        port: addr.port() as i32,
        produced: Notify::new(),
        wal,
    });
    loop {
        let (sock, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let mut conn = Conn {
                state: &state,
                sock,
                wbuf: BytesMut::with_capacity(1 << 16),
                holds: VecDeque::new(),
                scratch: BytesMut::new(),
            };
            if let Err(e) = conn.serve().await {
                if !e.is::<std::io::Error>() {
                    eprintln!("closing connection: {e:#}");
                }
            }
        });
    }
}

struct Conn<'a> {
    state: &'a State,
    sock: TcpStream,
    /// Responses not yet written.
    wbuf: BytesMut,
    /// With --store: where in `wbuf` an acks=all produce response starts and
    /// the flush it waits for. Nothing from there on is written before that
    /// flush is stored, as responses go out in request order.
    holds: VecDeque<(usize, u64)>,
    /// Fetch record sets are built here, then encoded into `wbuf`.
    scratch: BytesMut,
}

impl Conn<'_> {
    /// Answers requests in order. Every complete frame already read is
    /// answered before the responses go out in one write, so pipelined
    /// produce requests cost one read and one write per burst.
    async fn serve(&mut self) -> Result<()> {
        self.sock.set_nodelay(true)?;
        let mut rbuf = BytesMut::with_capacity(1 << 20);
        loop {
            while rbuf.len() >= 4 {
                let len = be_i32(&rbuf, 0);
                if len < 8 || len as usize > MAX_FRAME {
                    bail!("request frame of {len} bytes");
                }
                let len = len as usize;
                if rbuf.len() < 4 + len {
                    rbuf.reserve(4 + len - rbuf.len());
                    break;
                }
                rbuf.advance(4);
                // Frames are dropped before the next read, so `reserve` gets
                // the buffer's memory back instead of allocating.
                let frame = rbuf.split_to(len).freeze();
                self.handle(frame).await?;
            }
            // Registered before `flush` looks at what is stored, so a flush
            // completing in between still wakes the wait below.
            let stored = self.state.wal.as_ref().map(|w| w.stored.notified());
            tokio::pin!(stored);
            if let Some(s) = stored.as_mut().as_pin_mut() {
                s.enable();
            }
            self.flush().await?;
            if rbuf.capacity() - rbuf.len() < 64 << 10 {
                rbuf.reserve(64 << 10);
            }
            let held = !self.holds.is_empty();
            tokio::select! {
                n = self.sock.read_buf(&mut rbuf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                }
                _ = async { stored.as_pin_mut().unwrap().await }, if held => {}
            }
        }
    }

    /// Writes the responses that may go: all of them, or those before the
    /// first one still waiting for its flush.
    async fn flush(&mut self) -> Result<()> {
        if let Some(wal) = &self.state.wal {
            while self.holds.front().is_some_and(|&(_, f)| wal.is_stored(f)) {
                self.holds.pop_front();
            }
        }
        let ready = self.holds.front().map_or(self.wbuf.len(), |&(at, _)| at);
        if ready > 0 {
            self.sock.write_all(&self.wbuf[..ready]).await?;
            self.wbuf.advance(ready);
            for hold in &mut self.holds {
                hold.0 -= ready;
            }
        }
        Ok(())
    }

    fn respond<T: Encodable>(&mut self, h: &RequestHeader, body: &T) -> Result<()> {
        let key = ApiKey::try_from(h.request_api_key).map_err(|_| anyhow!("bad api key"))?;
        let (v, start) = (h.request_api_version, self.wbuf.len());
        self.wbuf.put_i32(0);
        let rh = ResponseHeader::default().with_correlation_id(h.correlation_id);
        rh.encode(&mut self.wbuf, key.response_header_version(v))?;
        body.encode(&mut self.wbuf, v)?;
        let len = (self.wbuf.len() - start - 4) as i32;
        self.wbuf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    async fn handle(&mut self, mut frame: Bytes) -> Result<()> {
        let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
        let v = i16::from_be_bytes([frame[2], frame[3]]);
        let key = ApiKey::try_from(raw_key).map_err(|_| anyhow!("unknown api key {raw_key}"))?;
        let Some(&(_, min, max)) = APIS.iter().find(|a| a.0 == key) else {
            bail!("unsupported api {key:?}");
        };
        if v < min || v > max {
            if key != ApiKey::ApiVersions {
                bail!("unsupported {key:?} version {v}");
            }
            // Kafka answers in v0 form, which every client can read, so the
            // client can retry with a version both sides know.
            let mut h = RequestHeader::default().with_request_api_key(raw_key);
            h.correlation_id = be_i32(&frame, 4);
            let resp = ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION);
            return self.respond(&h, &resp.with_api_keys(api_versions()));
        }
        let h = std::panic::catch_unwind(move || {
            RequestHeader::decode(&mut frame, key.request_header_version(v)).map(|h| (h, frame))
        });
        let (h, body) = h.map_err(|_| anyhow!("header decoder panicked"))??;
        let state = self.state;
        match key {
            ApiKey::Produce => self.produce(&h, decode(body, v)?),
            ApiKey::Fetch => self.fetch(&h, decode(body, v)?).await,
            ApiKey::Metadata => self.metadata(&h, decode(body, v)?),
            ApiKey::ApiVersions => {
                decode::<ApiVersionsRequest>(body, v)?;
                let resp = ApiVersionsResponse::default().with_api_keys(api_versions());
                self.respond(&h, &resp)
            }
            ApiKey::ListOffsets => {
                let req: ListOffsetsRequest = decode(body, v)?;
                let mut resp = ListOffsetsResponse::default();
                for t in req.topics {
                    let topic = state.topic(&t.name.0, None);
                    let mut r = ListOffsetsTopicResponse::default().with_name(t.name);
                    for p in t.partitions {
                        let i = p.partition_index;
                        let latest = (p.timestamp == -1).then(|| topic.hw(i));
                        let pr = ListOffsetsPartitionResponse::default().with_partition_index(i);
                        let pr = pr.with_offset(latest.unwrap_or(0));
                        r.partitions
                            .push(pr.with_leader_epoch(if v >= 4 { 0 } else { -1 }));
                    }
                    resp.topics.push(r);
                }
                self.respond(&h, &resp)
            }
            ApiKey::CreateTopics => {
                let req: CreateTopicsRequest = decode(body, v)?;
                let mut resp = CreateTopicsResponse::default();
                for t in req.topics {
                    let n = Some(t.num_partitions).filter(|&n| n > 0);
                    let n = n.unwrap_or(state.default_partitions);
                    if !req.validate_only {
                        state.topic(&t.name.0, Some(n));
                    }
                    let r = CreatableTopicResult::default().with_name(t.name);
                    resp.topics
                        .push(r.with_num_partitions(n).with_replication_factor(1));
                }
                self.respond(&h, &resp)
            }
            ApiKey::InitProducerId => {
                decode::<InitProducerIdRequest>(body, v)?;
                let resp = InitProducerIdResponse::default().with_producer_id(ProducerId(1));
                self.respond(&h, &resp)
            }
            ApiKey::FindCoordinator => {
                let req: FindCoordinatorRequest = decode(body, v)?;
                let (node, host, port) = (BrokerId(NODE), state.host.clone(), state.port);
                let mut resp = FindCoordinatorResponse::default();
                if v >= 4 {
                    for k in req.coordinator_keys {
                        let c = Coordinator::default().with_key(k).with_node_id(node);
                        resp.coordinators
                            .push(c.with_host(host.clone()).with_port(port));
                    }
                } else {
                    resp = resp.with_node_id(node).with_host(host).with_port(port);
                }
                self.respond(&h, &resp)
            }
            _ => bail!("unsupported api {key:?}"),
        }
    }

    /// Counts each partition's records from the batch headers and drops
    /// them (after queueing them for the store with --store), keeping only
    /// a partition's largest batch as its fetch template.
    fn produce(&mut self, h: &RequestHeader, req: ProduceRequest) -> Result<()> {
        let v = h.request_api_version;
        let mut resp = ProduceResponse::default();
        let mut flush = None;
        for t in req.topic_data {
            let topic = self.state.topic(&t.name.0, None);
            let mut tr = TopicProduceResponse::default().with_name(t.name);
            for p in t.partition_data {
                let mut r = PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_log_start_offset(if v >= 5 { 0 } else { -1 });
                let Some(part) = topic.part(p.index) else {
                    r.error_code = UNKNOWN_TOPIC_OR_PARTITION;
                    tr.partition_responses.push(r);
                    continue;
                };
                let records = p.records.unwrap_or_default();
                if let Some(wal) = self.state.wal.as_ref().filter(|_| !records.is_empty()) {
                    flush = Some(wal.push(records.clone()));
                }
                let (mut pos, mut n) = (0usize, 0i64);
                while pos + BATCH_HEADER <= records.len() {
                    let end = pos + 12 + be_i32(&records, pos + 8).max(0) as usize;
                    if end > records.len() || end < pos + BATCH_HEADER || records[pos + 16] != 2 {
                        break;
                    }
                    let batch_records = be_i32(&records, pos + 57).max(0) as i64;
                    n += batch_records;
                    if batch_records > part.template_records.load(Ordering::Relaxed) {
                        part.template_records
                            .store(batch_records, Ordering::Relaxed);
                        // A copy, so the template does not pin the read buffer.
                        let mut tpl = BytesMut::from(&records[pos..end]);
                        // The leader epoch lies outside the CRC; match metadata.
                        tpl[12..16].copy_from_slice(&0i32.to_be_bytes());
                        *part.template.lock().unwrap() = Some(tpl.freeze());
                    }
                    pos = end;
                }
                r.base_offset = part.count.fetch_add(n, Ordering::AcqRel);
                tr.partition_responses.push(r);
            }
            resp.responses.push(tr);
        }
        self.state.produced.notify_waiters();
        if req.acks == 0 {
            return Ok(());
        }
        if let Some(flush) = flush.filter(|_| req.acks == -1) {
            self.holds.push_back((self.wbuf.len(), flush));
        }
        self.respond(h, &resp)
    }

    fn metadata(&mut self, h: &RequestHeader, req: MetadataRequest) -> Result<()> {
        let (v, state) = (h.request_api_version, self.state);
        // v0 has no null list: an empty one there means every topic.
        let topics: Vec<(TopicName, Arc<Topic>)> = match req.topics {
            Some(list) if !(list.is_empty() && v == 0) => {
                let names = list.into_iter().filter_map(|t| t.name);
                names
                    .map(|n| (n.clone(), state.topic(&n.0, None)))
                    .collect()
            }
            _ => {
                let topics = state.topics.lock().unwrap();
                let name = |n: &String| TopicName(StrBytes::from_string(n.clone()));
                topics.iter().map(|(n, t)| (name(n), t.clone())).collect()
            }
        };
        let broker = MetadataResponseBroker::default().with_node_id(BrokerId(NODE));
        let broker = broker.with_host(state.host.clone()).with_port(state.port);
        let mut resp = MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_cluster_id((v >= 2).then(|| StrBytes::from_static_str("strata-null-sink")))
            .with_controller_id(BrokerId(if v >= 1 { NODE } else { -1 }));
        for (name, t) in topics {
            let parts = (0..t.parts.len() as i32).map(|i| {
                MetadataResponsePartition::default()
                    .with_partition_index(i)
                    .with_leader_id(BrokerId(NODE))
                    .with_leader_epoch(if v >= 7 { 0 } else { -1 })
                    .with_replica_nodes(vec![BrokerId(NODE)])
                    .with_isr_nodes(vec![BrokerId(NODE)])
            });
            let topic = MetadataResponseTopic::default().with_name(Some(name));
            resp.topics.push(topic.with_partitions(parts.collect()));
        }
        self.respond(h, &resp)
    }

    /// Answers from each partition's template, or after waiting up to
    /// `max_wait_ms` for a produce when no partition has anything to return.
    async fn fetch(&mut self, h: &RequestHeader, req: FetchRequest) -> Result<()> {
        let (v, state) = (h.request_api_version, self.state);
        let wait = Duration::from_millis(req.max_wait_ms.clamp(0, 60_000) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        let topics: Vec<_> = req
            .topics
            .iter()
            .map(|t| state.topic(&t.topic.0, None))
            .collect();
        let max_total = if req.max_bytes > 0 {
            req.max_bytes as usize
        } else {
            usize::MAX
        };
        loop {
            // Registered before looking, so a produce in between still wakes us.
            let produced = state.produced.notified();
            tokio::pin!(produced);
            produced.as_mut().enable();
            let mut total = 0usize;
            let mut resp = FetchResponse::default();
            for (t, topic) in req.topics.iter().zip(&topics) {
                let mut tr = FetchableTopicResponse::default().with_topic(t.topic.clone());
                for p in &t.partitions {
                    let hw = topic.hw(p.partition);
                    let mut pd = PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(if v >= 5 { 0 } else { -1 });
                    let tpl = topic
                        .part(p.partition)
                        .and_then(|p| p.template.lock().unwrap().clone());
                    if let Some(tpl) = tpl.filter(|_| p.fetch_offset < hw && total < max_total) {
                        let tpl = &tpl;
                        let limit = (p.partition_max_bytes.max(0) as usize).min(max_total - total);
                        let k = (be_i32(tpl, 57) as i64).max(1);
                        // Copies sit on a grid ending exactly at hw, so no
                        // record past hw is sent. The first copy may start
                        // before the fetch offset (even below 0); clients
                        // skip records below the offset they asked for, as
                        // they must for any Kafka batch.
                        let mut at = p.fetch_offset - (p.fetch_offset - hw).rem_euclid(k);
                        let buf = &mut self.scratch;
                        while at < hw && (buf.is_empty() || buf.len() + tpl.len() <= limit) {
                            let off = buf.len();
                            buf.extend_from_slice(tpl);
                            buf[off..off + 8].copy_from_slice(&at.to_be_bytes());
                            at += k;
                        }
                        total += buf.len();
                        pd.records = Some(buf.split().freeze());
                    }
                    tr.partitions.push(pd);
                }
                resp.responses.push(tr);
            }
            if total > 0 || tokio::time::Instant::now() >= deadline {
                return self.respond(h, &resp);
            }
            drop(resp);
            // Answers to earlier pipelined requests must not wait behind us.
            self.flush().await?;
            let _ = tokio::time::timeout_at(deadline, produced).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use object_store::memory::InMemory;

    /// Sends one produce request of `records` to partition 0 of "t" and
    /// returns the response's partition result.
    async fn produce(sock: &mut TcpStream, acks: i16, records: Bytes) -> i16 {
        let v = 9;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(v)
            .with_correlation_id(7);
        let part = PartitionProduceData::default().with_records(Some(records));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![part]);
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic]);
        let mut body = BytesMut::new();
        header
            .encode(&mut body, ApiKey::Produce.request_header_version(v))
            .unwrap();
        req.encode(&mut body, v).unwrap();
        sock.write_i32(body.len() as i32).await.unwrap();
        sock.write_all(&body).await.unwrap();
        let len = sock.read_i32().await.unwrap() as usize;
        let mut frame = vec![0; len];
        sock.read_exact(&mut frame).await.unwrap();
        let mut frame = Bytes::from(frame);
        let rh = ResponseHeader::decode(&mut frame, ApiKey::Produce.response_header_version(v));
        assert_eq!(rh.unwrap().correlation_id, 7);
        let resp = ProduceResponse::decode(&mut frame, v).unwrap();
        resp.responses[0].partition_responses[0].error_code
    }

    #[tokio::test]
    async fn the_store_sink_answers_acks_all_once_the_bytes_are_stored() {
        let store = Arc::new(InMemory::new());
        // A flush interval long enough that an answer sent before the PUT
        // would find the store empty.
        let wal = Wal::start(store.clone(), Duration::from_secs(2), 1 << 20, 4);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, 1, Some(wal)));
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let objects = || async {
            let list = store.list_with_delimiter(Some(&Path::from("sink"))).await;
            let mut bodies = Vec::new();
            for o in list.unwrap().objects {
                let got = store.get(&o.location).await.unwrap();
                bodies.push(got.bytes().await.unwrap());
            }
            bodies
        };

        let first = Bytes::from_static(b"first");
        assert_eq!(produce(&mut sock, 1, first).await, 0);
        assert!(
            objects().await.is_empty(),
            "acks=1 does not wait for the PUT"
        );
        let second = Bytes::from_static(b"second");
        assert_eq!(produce(&mut sock, -1, second).await, 0);
        assert_eq!(objects().await.concat(), b"firstsecond");

        // A MiB pending (the flush size here) is written without waiting for
        // the next tick, two seconds after the last flush.
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let started = std::time::Instant::now();
        assert_eq!(produce(&mut sock, -1, big.clone()).await, 0);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            objects().await.concat(),
            [&b"firstsecond"[..], &big].concat()
        );
    }
}
