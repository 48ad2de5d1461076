//! Idempotent producers end to end: a network that delivers every Produce
//! request twice, broker restarts and crashes under a producing client, and
//! the error codes and InitProducerId answers a client relies on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId, RequestHeader, ResponseHeader, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_common::TopicPartition;
use strata_e2e::proxy::Proxy;
use strata_e2e::{consume, TestBroker};
use strata_log::LogConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    for r in admin
        .create_topics(&[t], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.expect("topic created");
    }
}

fn idempotent_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "20")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .unwrap()
}

/// Queues one record, waiting while the client's queue is full.
async fn queue(
    p: &FutureProducer,
    rec: FutureRecord<'_, str, str>,
) -> rdkafka::producer::DeliveryFuture {
    let mut rec = rec;
    loop {
        match p.send_result(rec) {
            Ok(f) => return f,
            Err((_, back)) => {
                rec = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Every record of `topic`/`partition` up to its high watermark, as
/// (offset, value).
async fn read_all(broker: &TestBroker, topic: &str, partition: i32) -> Vec<(i64, String)> {
    let tp = TopicPartition::new(topic, partition);
    let hw = broker.log.partition(&tp).await.unwrap().high_watermark();
    let (b, t) = (broker.bootstrap(), topic.to_string());
    let seen = tokio::task::spawn_blocking(move || {
        consume(&b, &t, partition, 0, hw as usize, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(seen.len() as i64, hw, "{topic}/{partition}");
    seen.into_iter()
        .map(|s| (s.offset, String::from_utf8(s.value.unwrap()).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_sends_every_produce_twice_stores_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(true).await;
    let broker =
        TestBroker::start_advertising(dir.path(), LogConfig::default(), Some(proxy.addr)).await;
    proxy.set_upstream(broker.addr);
    let via_proxy = proxy.addr.to_string();
    create_topic(&via_proxy, "twice", 4, &[]).await;

    let p = idempotent_producer(&via_proxy);
    let n = 2000usize;
    let mut futs = Vec::new();
    for i in 0..n {
        let (key, value) = (format!("key-{}", i % 37), format!("value-{i}"));
        futs.push(
            queue(
                &p,
                FutureRecord::to("twice")
                    .key(key.as_str())
                    .payload(value.as_str()),
            )
            .await,
        );
        if i.is_multiple_of(100) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // (partition, offset) -> value, as the producer was told.
    let mut acked = BTreeMap::new();
    for (i, f) in futs.into_iter().enumerate() {
        let d = f.await.unwrap().expect("delivered");
        assert!(acked
            .insert((d.partition, d.offset), format!("value-{i}"))
            .is_none());
    }
    drop(p);

    let mut per_partition = HashMap::new();
    for partition in 0..4 {
        let stored = read_all(&broker, "twice", partition).await;
        per_partition.insert(partition, stored.len());
        let mut last_of_key: HashMap<usize, usize> = HashMap::new();
        for (offset, value) in stored {
            assert_eq!(
                acked.get(&(partition, offset)),
                Some(&value),
                "{partition}/{offset}"
            );
            let i: usize = value.trim_start_matches("value-").parse().unwrap();
            if let Some(prev) = last_of_key.insert(i % 37, i) {
                assert!(prev < i, "key order broken: {prev} then {i}");
            }
        }
    }
    assert_eq!(
        per_partition.values().sum::<usize>(),
        n,
        "{per_partition:?}"
    );
    assert!(per_partition.values().filter(|c| **c > 0).count() > 1);

    // Each copy was answered like its original: success, same offsets.
    let stats = &proxy.stats;
    for _ in 0..100 {
        if stats.compared.load(Ordering::Relaxed) == stats.duplicated.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stats.duplicated.load(Ordering::Relaxed) > 0);
    assert_eq!(
        stats.compared.load(Ordering::Relaxed),
        stats.duplicated.load(Ordering::Relaxed)
    );
    assert_eq!(*stats.mismatches.lock().unwrap(), Vec::<String>::new());
    broker.stop().await;
}

/// What one restart does to the broker.
#[derive(Clone, Copy, Debug)]
enum Restart {
    Clean,
    Crash,
}

/// Retries that reach a restarted broker must find the batches its
/// predecessor wrote: in the WAL tail, or in a sealed segment's snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_acknowledged_across_restarts_are_stored_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(false).await;
    let config = LogConfig {
        seal_check_ms: 50,
        ..LogConfig::default()
    };
    let start = || TestBroker::start_advertising(dir.path(), config.clone(), Some(proxy.addr));
    let mut broker = start().await;
    proxy.set_upstream(broker.addr);
    let bootstrap = proxy.addr.to_string();
    create_topic(&bootstrap, "restarts", 3, &[("segment.bytes", "30000")]).await;

    let p = idempotent_producer(&bootstrap);
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut futs = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (key, value) = (format!("key-{}", i % 11), format!("r-{i}"));
                let rec = FutureRecord::to("restarts")
                    .partition((i % 3) as i32)
                    .key(key.as_str())
                    .payload(value.as_str());
                futs.push(queue(&p, rec).await);
                i += 1;
                if i.is_multiple_of(20) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            let mut out = Vec::new();
            for (i, f) in futs.into_iter().enumerate() {
                let d = f.await.unwrap().map(|d| (d.partition, d.offset));
                out.push((i, d.map_err(|(e, _)| e.to_string())));
            }
            out
        })
    };
    for how in [
        Restart::Clean,
        Restart::Crash,
        Restart::Clean,
        Restart::Crash,
    ] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The broker keeps taking (and committing) requests whose answers
        // never arrive: the producer must retry them after the restart.
        proxy.lose_responses(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        match how {
            Restart::Clean => broker.stop().await,
            Restart::Crash => broker.crash().await,
        }
        proxy.cut();
        broker = start().await;
        proxy.set_upstream(broker.addr);
        proxy.lose_responses(false);
        eprintln!("restarted after a {how:?} stop");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let deliveries = tokio::time::timeout(Duration::from_secs(90), producing)
        .await
        .expect("deliveries in time")
        .unwrap();

    let failed: Vec<_> = deliveries.iter().filter(|(_, d)| d.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    let mut where_acked = HashMap::new();
    for (i, d) in &deliveries {
        where_acked.insert(format!("r-{i}"), *d.as_ref().unwrap());
    }
    let mut stored = 0;
    for partition in 0..3 {
        let mut prev = None;
        for (offset, value) in read_all(&broker, "restarts", partition).await {
            let at = where_acked.remove(&value);
            assert_eq!(
                at,
                Some((partition, offset)),
                "{value} stored twice or not acked"
            );
            let i: usize = value.trim_start_matches("r-").parse().unwrap();
            assert!(prev < Some(i), "order broken at {value}");
            prev = Some(i);
            stored += 1;
        }
    }
    assert!(
        where_acked.is_empty(),
        "acknowledged but lost: {where_acked:?}"
    );
    assert_eq!(stored, deliveries.len());
    assert!(stored > 1000, "only {stored} records produced");
    broker.stop().await;
}

/// A bare Kafka client: one request at a time, any API and version.
struct Raw {
    stream: TcpStream,
    correlation: i32,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        self.stream.write_u32(buf.len() as u32).await.unwrap();
        self.stream.write_all(&buf).await.unwrap();
        let len = self.stream.read_u32().await.unwrap() as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        let rh = ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
        assert_eq!(rh.correlation_id, self.correlation);
        let resp = Resp::decode(&mut body, version).unwrap();
        assert!(!body.has_remaining(), "trailing bytes in {key:?} response");
        resp
    }

    async fn init_producer_id(
        &mut self,
        txn: Option<&'static str>,
        id: i64,
        epoch: i16,
    ) -> (i16, i64, i16) {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_static_str(t))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        let r: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 4, &req).await;
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    /// Produces one batch of `count` records; returns (error code, base offset).
    async fn produce(&mut self, pid: i64, epoch: i16, seq: i32, count: i64) -> (i16, i64) {
        let spec = strata_format::BatchSpec {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
        };
        let records: Vec<_> = (0..count)
            .map(|i| strata_format::Record {
                offset: i,
                timestamp: 1,
                key: None,
                value: Some(Bytes::from(format!("{seq}+{i}"))),
                headers: Vec::new(),
            })
            .collect();
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("raw")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(strata_format::encode_batch(&spec, &records)))])]);
        let r: ProduceResponse = self.call(ApiKey::Produce, 9, &req).await;
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }
}

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNSUPPORTED_VERSION: i16 = 35;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_stale_epochs_and_epoch_bumps_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    create_topic(&broker.bootstrap(), "raw", 1, &[]).await;
    let mut c = Raw::connect(broker.addr).await;

    let (err, pid, epoch) = c.init_producer_id(None, -1, -1).await;
    assert_eq!((err, epoch), (0, 0));
    assert!(pid >= 0);
    assert_eq!(c.produce(pid, 0, 0, 3).await, (0, 0));
    assert_eq!(
        c.produce(pid, 0, 5, 1).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // A retry: its original offset again, nothing written.
    assert_eq!(c.produce(pid, 0, 0, 3).await, (0, 0));
    assert_eq!(c.produce(pid, 0, 3, 1).await, (0, 3));

    // KIP-360: the same id under the next epoch, whose sequences restart.
    assert_eq!(c.init_producer_id(None, pid, 0).await, (0, pid, 1));
    assert_eq!(c.produce(pid, 1, 0, 2).await, (0, 4));
    assert_eq!(c.produce(pid, 0, 4, 1).await.0, INVALID_PRODUCER_EPOCH);
    // An exhausted epoch gets a new id.
    let (err, other, epoch) = c.init_producer_id(None, pid, i16::MAX - 1).await;
    assert_eq!((err, epoch), (0, 0));
    assert_ne!(other, pid);

    let (err, id, _) = c.init_producer_id(Some("txn"), -1, -1).await;
    assert_eq!((err, id), (UNSUPPORTED_VERSION, -1));

    let tp = TopicPartition::new("raw", 0);
    assert_eq!(broker.log.partition(&tp).await.unwrap().high_watermark(), 6);
    broker.stop().await;
}
