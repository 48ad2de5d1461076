//! A "null sink": the smallest Kafka-protocol server that librdkafka will
//! produce to and consume from, used as the ceiling in throughput benchmarks.
//! It stores nothing: produced data is counted and dropped, and fetches are
//! answered from one kept batch per partition with its base offset rewritten.
//! Whatever rate a client reaches against it is the limit of the client and
//! the machine, not of a broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Parser)]
#[command(about = "Kafka-protocol server that discards produced data (benchmark ceiling)")]
struct Args {
    /// Address to listen on; it is also the address advertised in metadata.
    #[arg(long)]
    listen: SocketAddr,
    /// Partition count for topics not created through CreateTopics.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
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
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        topics: Mutex::new(HashMap::new()),
        default_partitions: args.partitions.max(1),
        host: StrBytes::from_string(addr.ip().to_string()),
        port: addr.port() as i32,
        produced: Notify::new(),
    });
    loop {
        let (sock, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let mut conn = Conn {
                state: &state,
                sock,
                wbuf: BytesMut::with_capacity(1 << 16),
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
            self.flush().await?;
            if rbuf.capacity() - rbuf.len() < 64 << 10 {
                rbuf.reserve(64 << 10);
            }
            if self.sock.read_buf(&mut rbuf).await? == 0 {
                return Ok(());
            }
        }
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.sock.write_all(&self.wbuf).await?;
            self.wbuf.clear();
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
    /// them, keeping only a partition's first batch as its fetch template.
    fn produce(&mut self, h: &RequestHeader, req: ProduceRequest) -> Result<()> {
        let v = h.request_api_version;
        let mut resp = ProduceResponse::default();
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
