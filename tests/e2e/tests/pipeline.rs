//! A producer that pipelines many acks=all requests on one connection: the
//! broker reads thousands of requests ahead, so they wait for the same few
//! WAL flushes, and still answers them one by one in request order.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_common::TopicPartition;
use strata_e2e::{consume, TestBroker};
use strata_log::LogConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "pipelined";
const PRODUCE_VERSION: i16 = 9;
const CREATE_TOPICS_VERSION: i16 = 5;

/// A request frame: size, header, body.
fn frame<Req: Encodable>(key: ApiKey, version: i16, correlation: i32, req: &Req) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("pipeline")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.freeze()
}

/// Reads one response frame; returns its correlation id and body.
async fn response<Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
) -> (i32, Resp) {
    let len = stream.read_u32().await.unwrap() as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
    let resp = Resp::decode(&mut body, version).unwrap();
    assert!(
        !body.has_remaining(),
        "trailing bytes in a {key:?} response"
    );
    (header.correlation_id, resp)
}

fn value(i: usize) -> String {
    format!("pipelined-{i}")
}

/// One acks=all request holding one batch of one record, `value(i)`.
fn produce(i: usize) -> ProduceRequest {
    let spec = strata_format::BatchSpec::unassigned();
    let record = strata_format::Record {
        offset: 0,
        timestamp: 1_700_000_000_000 + i as i64,
        key: None,
        value: Some(Bytes::from(value(i))),
        headers: Vec::new(),
    };
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(strata_format::encode_batch(&spec, &[record])))])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_pipelined_acks_all_produces_share_a_few_wal_flushes() {
    let dir = tempfile::tempdir().unwrap();
    // A flush every 100 ms: requests read ahead join the pending flush, so
    // the count of flushes shows how many requests each one carried.
    let broker = TestBroker::start_with(
        dir.path(),
        LogConfig {
            wal_flush_ms: 100,
            ..LogConfig::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(broker.addr).await.unwrap();

    // The topic, created over the same connection.
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    stream
        .write_all(&frame(
            ApiKey::CreateTopics,
            CREATE_TOPICS_VERSION,
            -7,
            &create,
        ))
        .await
        .unwrap();
    let (correlation, created): (i32, CreateTopicsResponse) =
        response(&mut stream, ApiKey::CreateTopics, CREATE_TOPICS_VERSION).await;
    assert_eq!(correlation, -7);
    assert_eq!(created.topics.len(), 1);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);

    let tp = TopicPartition::new(TOPIC, 0);
    let meta = broker.log.meta().clone();
    assert!(meta.manifest(&tp).await.unwrap().wal.is_empty());

    // 2,000 requests back to back, no response read in between.
    let n = 2000usize;
    for i in 0..n {
        let f = frame(ApiKey::Produce, PRODUCE_VERSION, i as i32, &produce(i));
        stream.write_all(&f).await.unwrap();
    }
    stream.flush().await.unwrap();

    // Then every answer, in request order, each with the next offset.
    let answers = async {
        let mut offsets = Vec::with_capacity(n);
        for i in 0..n {
            let (correlation, r): (i32, ProduceResponse) =
                response(&mut stream, ApiKey::Produce, PRODUCE_VERSION).await;
            assert_eq!(correlation, i as i32, "answers in request order");
            assert_eq!(r.responses.len(), 1);
            assert_eq!(r.responses[0].name.0.as_str(), TOPIC);
            let parts = &r.responses[0].partition_responses;
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].index, 0);
            assert_eq!(parts[0].error_code, 0, "request {i}: {:?}", parts[0]);
            offsets.push(parts[0].base_offset);
        }
        offsets
    };
    // A guard against a hang only (the broker stopped answering), not a
    // measure of speed.
    let offsets = tokio::time::timeout(Duration::from_secs(120), answers)
        .await
        .expect("the broker answered all 2,000 requests");
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());

    // Every record is durable (in a committed WAL object), and those
    // objects are far fewer than the requests: each flush carried many.
    let manifest = meta.manifest(&tp).await.unwrap();
    assert_eq!(manifest.end_offset, n as i64);
    assert!(manifest.segments.is_empty());
    let mut next = 0;
    for w in &manifest.wal {
        assert_eq!(w.base_offset, next, "WAL ranges are contiguous");
        next = w.last_offset + 1;
    }
    assert_eq!(next, n as i64, "WAL ranges hold every record");
    let flushes = manifest.wal.len();
    eprintln!("{n} pipelined acks=all requests took {flushes} WAL flushes");
    // A pipeline of 32 requests would need at least n / 32 = 63 flushes.
    assert!(
        flushes * 50 <= n,
        "{flushes} WAL flushes for {n} requests: requests were not read ahead"
    );

    // A consumer reads the 2,000 values back in order.
    let bootstrap = broker.bootstrap();
    let seen = tokio::task::spawn_blocking(move || {
        consume(&bootstrap, TOPIC, 0, 0, n, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let got: Vec<(i64, String)> = seen
        .into_iter()
        .map(|s| (s.offset, String::from_utf8(s.value.unwrap()).unwrap()))
        .collect();
    let want: Vec<(i64, String)> = (0..n).map(|i| (i as i64, value(i))).collect();
    assert_eq!(got, want);
    broker.stop().await;
}
