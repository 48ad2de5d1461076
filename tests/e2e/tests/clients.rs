//! librdkafka against an in-process broker: compression codecs, keys,
//! headers, acks settings, sealed segments and recovery.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_e2e::{consume, TestBroker};
use strata_log::LogConfig;

async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin
        .create_topics(&[t], &AdminOptions::new())
        .await
        .unwrap();
    for r in res {
        r.expect("topic created");
    }
}

async fn list(store: &std::sync::Arc<dyn strata_store::ObjectStore>, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = object_store::path::Path::from(prefix.trim_end_matches('/'));
    let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    metas.into_iter().map(|m| m.location.to_string()).collect()
}

fn producer(bootstrap: &str, acks: &str, compression: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("compression.type", compression)
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .create()
        .unwrap()
}

/// Sends `n` keyed records with a header each to partition `partition`;
/// returns the offsets the broker assigned.
async fn send(p: &FutureProducer, topic: &str, partition: i32, n: usize, tag: &str) -> Vec<i64> {
    send_from(p, topic, partition, n, tag, 0).await
}

async fn send_from(
    p: &FutureProducer,
    topic: &str,
    partition: i32,
    n: usize,
    tag: &str,
    first: usize,
) -> Vec<i64> {
    let mut futs = Vec::new();
    for i in first..first + n {
        let key = format!("key-{}", i % 13);
        let value = format!("{tag}-value-{i}-{}", "x".repeat(i % 50));
        let headers = OwnedHeaders::new().insert(Header {
            key: "seq",
            value: Some(i.to_string().as_bytes()),
        });
        let rec = FutureRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&value)
            .headers(headers);
        let mut rec = rec;
        loop {
            match p.send_result(rec) {
                Ok(f) => {
                    futs.push(f);
                    break;
                }
                Err((_, back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    let mut offsets = Vec::new();
    for f in futs {
        let d = f.await.expect("delivery future").expect("delivered");
        offsets.push(d.offset);
    }
    offsets
}

fn check(seen: &[strata_e2e::Seen], tag: &str, first: i64) {
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.offset, first + i as i64);
        assert_eq!(s.key.as_deref(), Some(format!("key-{}", i % 13).as_bytes()));
        let v = format!("{tag}-value-{i}-{}", "x".repeat(i % 50));
        assert_eq!(s.value.as_deref(), Some(v.as_bytes()), "record {i}");
        assert_eq!(
            s.headers,
            vec![("seq".to_string(), Some(i.to_string().into_bytes()))]
        );
    }
}

/// Waits until `topic`/`partition` is sealed up to `last` (its last segment ends there).
async fn wait_sealed_to(broker: &TestBroker, topic: &str, partition: i32, last: i64) {
    let tp = strata_common::TopicPartition::new(topic, partition);
    let mut sealed_to = -1;
    for _ in 0..200 {
        let m = broker.log.meta().manifest(&tp).await.unwrap();
        sealed_to = m.segments.last().map_or(-1, |s| s.last_offset);
        if sealed_to == last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sealed_to, last, "{topic}/{partition} not sealed");
}

/// Assigns `partitions` of `topic` from the beginning to a new consumer (with
/// `settings` on top of the defaults) and polls until each has given its first
/// record or a minute passed: per partition, that record's offset and when it
/// came, counted from `started`. Blocking: call it from `spawn_blocking`.
fn first_records(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    settings: &[(&str, &str)],
    started: std::time::Instant,
) -> std::collections::BTreeMap<i32, (i64, Duration)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let c: BaseConsumer = config.create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for part in 0..partitions {
        tpl.add_partition_offset(topic, part, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut firsts = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while firsts.len() < partitions as usize && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            firsts
                .entry(m.partition())
                .or_insert((m.offset(), started.elapsed()));
        }
    }
    firsts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let b = broker.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&b, &topic, 1, &[]).await;
        let p = producer(&b, "all", codec);
        let offsets = send(&p, &topic, 0, 500, codec).await;
        assert_eq!(offsets, (0..500).collect::<Vec<i64>>(), "{codec}");
        let b2 = b.clone();
        let seen = tokio::task::spawn_blocking(move || {
            consume(&b2, &topic, 0, 0, 500, Duration::from_secs(20))
        })
        .await
        .unwrap();
        assert_eq!(seen.len(), 500, "{codec}");
        check(&seen, codec, 0);
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_segments_are_served_after_restart_with_cold_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        seal_check_ms: 50,
        // Smaller than a produced batch: row groups must still keep batches whole.
        row_group_rows: 128,
        ..LogConfig::default()
    };
    let broker = TestBroker::start_with(dir.path(), config.clone()).await;
    let b = broker.bootstrap();
    create_topic(&b, "sealed", 1, &[("segment.bytes", "20000")]).await;
    let p = producer(&b, "all", "none");
    // Ten requests, so the log holds several batches to cut segments at.
    for round in 0..10 {
        send_from(&p, "sealed", 0, 300, "s", round * 300).await;
    }
    drop(p);
    // Wait for the tail to be sealed into several Parquet objects. A seal
    // uploads its object before committing it, so the listing and the manifest
    // agree once sealing is over.
    let (mut segments, mut objects) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let m = broker
            .log
            .meta()
            .manifest(&strata_common::TopicPartition::new("sealed", 0))
            .await
            .unwrap();
        segments = m.segments.iter().map(|s| s.key.clone()).collect();
        objects = list(&broker.store, "topics/sealed/0/").await;
        segments.sort();
        objects.sort();
        if segments.len() >= 3 && objects == segments {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        segments.len() >= 3,
        "expected at least 3 sealed segments, got {segments:?}"
    );
    assert_eq!(objects, segments, "one Parquet object per segment");
    assert!(objects.iter().all(|k| k.ends_with(".parquet")));
    broker.stop().await;

    let broker = TestBroker::start_with(dir.path(), config).await;
    let b = broker.bootstrap();
    // From the middle of a segment: served from Parquet, original offsets.
    let b2 = b.clone();
    let seen = tokio::task::spawn_blocking(move || {
        consume(&b2, "sealed", 0, 1234, 3000 - 1234, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 3000 - 1234);
    assert_eq!(seen[0].offset, 1234);
    let expected: Vec<_> = (0..3000).collect();
    for (s, i) in seen.iter().zip(&expected[1234..]) {
        assert_eq!(s.offset, *i as i64);
        let v = format!("s-value-{i}-{}", "x".repeat(i % 50));
        assert_eq!(s.value.as_deref(), Some(v.as_bytes()));
        assert_eq!(s.headers[0].1.as_deref(), Some(i.to_string().as_bytes()));
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_crash_from_wal_objects_alone() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let b = broker.bootstrap();
    create_topic(&b, "crashy", 3, &[]).await;
    let p = producer(&b, "all", "snappy");
    for part in 0..3 {
        send(&p, "crashy", part, 400, "c").await;
    }
    drop(p);
    // An object a crash left between its PUT and its commit.
    broker
        .store
        .put(
            &object_store::path::Path::from("wal/1/dead-000000000001"),
            bytes::Bytes::from_static(b"never committed").into(),
        )
        .await
        .unwrap();
    broker.crash().await;

    let broker = TestBroker::start(dir.path()).await;
    let wal = list(&broker.store, "wal/1/").await;
    assert!(!wal.is_empty(), "committed wal objects are kept");
    assert!(
        !wal.iter().any(|k| k.contains("dead")),
        "uncommitted wal object was not collected: {wal:?}"
    );
    let b = broker.bootstrap();
    for part in 0..3 {
        let b2 = b.clone();
        let seen = tokio::task::spawn_blocking(move || {
            consume(&b2, "crashy", part, 0, 400, Duration::from_secs(20))
        })
        .await
        .unwrap();
        assert_eq!(seen.len(), 400, "partition {part}");
        check(&seen, "c", 0);
    }
    // New writes continue after the recovered end offset.
    let p = producer(&b, "all", "none");
    let offsets = send(&p, "crashy", 0, 5, "c").await;
    assert_eq!(offsets, vec![400, 401, 402, 403, 404]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_the_broker_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let b = broker.bootstrap();
    create_topic(
        &b,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    create_topic(&b, "created", 1, &[]).await;
    let p = producer(&b, "all", "none");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for topic in ["stamped", "created"] {
        let rec = FutureRecord::<(), _>::to(topic)
            .partition(0)
            .payload("old")
            .timestamp(1_000_000);
        p.send(rec, Duration::from_secs(10))
            .await
            .expect("delivered");
    }
    let b2 = b.clone();
    let (stamped, created) = tokio::task::spawn_blocking(move || {
        (
            consume(&b2, "stamped", 0, 0, 1, Duration::from_secs(10)),
            consume(&b2, "created", 0, 0, 1, Duration::from_secs(10)),
        )
    })
    .await
    .unwrap();
    assert!(stamped[0].timestamp.0, "timestamp type is LogAppendTime");
    assert!(
        stamped[0].timestamp.1 >= before,
        "{:?}",
        stamped[0].timestamp
    );
    assert_eq!(created[0].timestamp, (false, 1_000_000));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_seals_tails_before_segment_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        seal_check_ms: 50,
        max_unsealed_bytes: 50_000,
        ..LogConfig::default()
    };
    let broker = TestBroker::start_with(dir.path(), config).await;
    let b = broker.bootstrap();
    // segment.bytes stays at its 64 MiB default: only the budget can seal.
    create_topic(&b, "budget", 2, &[]).await;
    let p = producer(&b, "all", "none");
    for round in 0..6 {
        for part in 0..2 {
            send_from(&p, "budget", part, 200, "m", round * 200).await;
        }
    }
    let mut sealed = 0;
    for _ in 0..100 {
        sealed = 0;
        for part in 0..2 {
            let m = broker
                .log
                .meta()
                .manifest(&strata_common::TopicPartition::new("budget", part))
                .await
                .unwrap();
            sealed += m.segments.len();
        }
        if sealed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sealed >= 2, "tails over the memory budget were not sealed");
    let b2 = b.clone();
    let seen = tokio::task::spawn_blocking(move || {
        consume(&b2, "budget", 0, 0, 1200, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 1200);
    check(&seen, "m", 0);
    broker.stop().await;
}

/// A consumer of many partitions whose data is only in the bucket: one fetch asks
/// for all of them, and the broker reads them at once rather than one GET after
/// another, so the first records of every partition arrive in about one GET's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fetch_reads_its_cold_partitions_at_once() {
    const PARTITIONS: i32 = 8;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        seal_check_ms: 50,
        ..LogConfig::default()
    };
    let broker = TestBroker::start_with(dir.path(), config.clone()).await;
    let b = broker.bootstrap();
    create_topic(&b, "wide", PARTITIONS, &[("segment.ms", "100")]).await;
    let p = producer(&b, "all", "none");
    for part in 0..PARTITIONS {
        send(&p, "wide", part, 50, "w").await;
    }
    drop(p);
    // Every partition sealed whole: after the restart nothing is in memory.
    for part in 0..PARTITIONS {
        wait_sealed_to(&broker, "wide", part, 49).await;
    }
    broker.stop().await;

    let broker = TestBroker::start_with(dir.path(), config).await;
    let get = Duration::from_millis(400);
    broker.faults.set_latency(get);
    let b = broker.bootstrap();
    let started = std::time::Instant::now();
    let firsts =
        tokio::task::spawn_blocking(move || first_records(&b, "wide", PARTITIONS, &[], started))
            .await
            .unwrap();
    let took = started.elapsed();
    assert_eq!(
        firsts.len(),
        PARTITIONS as usize,
        "partitions read: {firsts:?}"
    );
    assert!(firsts.values().all(|&(o, _)| o == 0), "{firsts:?}");
    // Each cold partition costs two GETs (footer, row group). One after another
    // that is 16 GETs; read at once, a few.
    assert!(
        took < get * 6,
        "first records of {PARTITIONS} cold partitions took {took:?} with {get:?} per GET"
    );
    broker.stop().await;
}

/// A consumer asking for a large fetch.min.bytes, reading segments that are only in
/// the bucket and hold many row groups each: every fetch waits for the groups it needs
/// (read at once) and a fetch that reaches a segment's end is answered with what it
/// has, as Kafka answers one outside its active segment. Short answers would each sit
/// out fetch.wait.max.ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fetch_min_bytes_is_met_from_cold_segments() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;

    const PER_SEGMENT: usize = 1500;
    const VALUE: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        seal_check_ms: 50,
        // About 100 KB per row group: fifteen in a segment.
        row_group_rows: 100,
        ..LogConfig::default()
    };
    let broker = TestBroker::start_with(dir.path(), config.clone()).await;
    let b = broker.bootstrap();
    create_topic(&b, "bulk", 1, &[("segment.ms", "300")]).await;
    let p = producer(&b, "all", "none");
    let value = |i: usize| format!("{i:08}{}", "v".repeat(VALUE - 8));
    for round in 0..2 {
        let values: Vec<String> = (round * PER_SEGMENT..(round + 1) * PER_SEGMENT)
            .map(value)
            .collect();
        let sends = values.iter().map(|v| {
            let rec = FutureRecord::<(), _>::to("bulk").partition(0).payload(v);
            p.send(rec, Duration::from_secs(10))
        });
        for sent in futures::future::join_all(sends).await {
            sent.expect("delivered");
        }
        // Sealed before the next round, so the rounds are separate segments.
        wait_sealed_to(&broker, "bulk", 0, ((round + 1) * PER_SEGMENT) as i64 - 1).await;
    }
    drop(p);
    broker.stop().await;

    let broker = TestBroker::start_with(dir.path(), config).await;
    let get = Duration::from_millis(100);
    broker.faults.set_latency(get);
    let max_wait = Duration::from_secs(30);
    let b = broker.bootstrap();
    let started = std::time::Instant::now();
    let seen = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", "bulk-reader")
            .set("enable.auto.commit", "false")
            // Six row groups' worth; a fetch of 1 MiB ends 460 KB short at the end of
            // the first segment.
            .set("fetch.min.bytes", "600000")
            .set("fetch.wait.max.ms", max_wait.as_millis().to_string())
            .set("max.partition.fetch.bytes", "1048576")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("bulk", 0, rdkafka::Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + 2 * max_wait;
        while seen.len() < 2 * PER_SEGMENT && std::time::Instant::now() < deadline {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => seen.push((m.offset(), m.payload().map(<[u8]>::to_vec))),
                Some(Err(e)) => panic!("consumer error: {e}"),
                None => {}
            }
        }
        seen
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(seen.len(), 2 * PER_SEGMENT, "records read in {took:?}");
    for (i, (offset, payload)) in seen.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(payload.as_deref(), Some(value(i).as_bytes()), "record {i}");
    }
    assert!(
        took < max_wait / 2,
        "3 MB from cold segments took {took:?} with fetch.wait.max.ms {max_wait:?}"
    );
    broker.stop().await;
}

/// A consumer of two partitions, one whose segment is cached and one whose segment
/// is still only in a slow bucket: the cached partition's records arrive within the
/// consumer's fetch.wait.max.ms, not once the other partition's GETs are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_partition_does_not_hold_back_a_cached_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        seal_check_ms: 50,
        ..LogConfig::default()
    };
    let broker = TestBroker::start_with(dir.path(), config.clone()).await;
    let b = broker.bootstrap();
    create_topic(&b, "mixed", 2, &[("segment.ms", "100")]).await;
    let p = producer(&b, "all", "none");
    for part in 0..2 {
        send(&p, "mixed", part, 50, "m").await;
    }
    drop(p);
    for part in 0..2 {
        wait_sealed_to(&broker, "mixed", part, 49).await;
    }
    broker.stop().await;

    let broker = TestBroker::start_with(dir.path(), config).await;
    let b = broker.bootstrap();
    // Partition 0 read once: its segment is now in the cache.
    let b2 = b.clone();
    let warm = tokio::task::spawn_blocking(move || {
        consume(&b2, "mixed", 0, 0, 50, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(warm.len(), 50);
    // Partition 1 taken over too (its manifest and WAL read), its segment not read.
    let b2 = b.clone();
    let marks = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b2)
            .create()
            .unwrap();
        c.fetch_watermarks("mixed", 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(marks.unwrap(), (0, 50));
    let get = Duration::from_secs(3);
    broker.faults.set_latency(get);
    let started = std::time::Instant::now();
    let settings = [("fetch.wait.max.ms", "500")];
    let firsts =
        tokio::task::spawn_blocking(move || first_records(&b, "mixed", 2, &settings, started))
            .await
            .unwrap();
    assert_eq!(firsts.len(), 2, "partitions read: {firsts:?}");
    assert!(firsts.values().all(|&(o, _)| o == 0), "{firsts:?}");
    let (cached, cold) = (firsts[&0].1, firsts[&1].1);
    assert!(
        cold >= get,
        "the cold partition's GETs take {get:?} each: {firsts:?}"
    );
    assert!(
        cached < get / 2,
        "the cached partition waited {cached:?} with the cold one's GETs at {get:?}"
    );
    broker.stop().await;
}
