//! A seal puts the new segment's footer and row groups into the segment
//! cache, so reading sealed offsets right after a seal needs no GET; a
//! fresh log (empty cache) reads the same records from the bucket.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use strata_common::{SystemClock, TopicPartition};
use strata_format::{decode_batch, encode_batch, parse_header, BatchSpec, Record};
use strata_meta::{EmbeddedMetadata, Metadata, TopicMeta};
use strata_store::{CountingStore, FaultHandle, FaultyStore, StoreMetrics};

use crate::{LogConfig, LogManager};

/// Bucket stack of the test: GETs counted above a store whose requests can
/// be made to fail, above the bytes themselves.
struct Bucket {
    bytes: Arc<InMemory>,
    faults: FaultHandle,
    metrics: Arc<StoreMetrics>,
    store: Arc<dyn ObjectStore>,
}

fn bucket() -> Bucket {
    let bytes = Arc::new(InMemory::new());
    let (faulty, faults) = FaultyStore::new(bytes.clone());
    let metrics = StoreMetrics::new();
    let store = Arc::new(CountingStore::new(Arc::new(faulty), metrics.clone()));
    Bucket {
        bytes,
        faults,
        metrics,
        store,
    }
}

impl Bucket {
    fn gets(&self) -> u64 {
        self.metrics.snapshot().gets
    }
}

async fn open(bucket: &Bucket, meta: &Arc<EmbeddedMetadata>, topic: &TopicMeta) -> LogManager {
    let log = LogManager::open(
        LogConfig {
            // Several row groups per segment, each cached on its own.
            row_group_rows: 4,
            ..LogConfig::default()
        },
        bucket.store.clone(),
        meta.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    log.open_topic(topic).await.unwrap();
    log
}

/// Batch `i` as a client sends it: `i % 3 + 1` records with distinct values.
fn client_batch(i: usize) -> Bytes {
    let spec = BatchSpec::unassigned();
    let records: Vec<Record> = (0..(i % 3 + 1) as i64)
        .map(|j| Record {
            offset: j,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value-{i}-{j}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&spec, &records)
}

/// Every batch from offset 0 to the high watermark, one read at a time.
async fn read_all(log: &LogManager, tp: &TopicPartition) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let res = log.read(tp, offset, 1, 64).await.unwrap();
        if offset >= res.high_watermark {
            return out;
        }
        assert!(!res.batches.is_empty(), "nothing at {offset}");
        for b in res.batches {
            offset = parse_header(&b).unwrap().last_offset() + 1;
            out.push(b);
        }
    }
}

/// (base offset, values) of each batch.
fn contents(batches: &[Bytes]) -> Vec<(i64, Vec<String>)> {
    batches
        .iter()
        .map(|b| {
            let d = decode_batch(b).unwrap();
            let values = d
                .records
                .iter()
                .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
                .collect();
            (d.header.base_offset, values)
        })
        .collect()
}

/// What the appends of batches `0..n` should read back as.
fn expected(n: usize) -> Vec<(i64, Vec<String>)> {
    let mut base = 0;
    (0..n)
        .map(|i| {
            let values: Vec<String> = (0..i % 3 + 1).map(|j| format!("value-{i}-{j}")).collect();
            let this = base;
            base += values.len() as i64;
            (this, values)
        })
        .collect()
}

async fn seal_all(log: &LogManager, tp: &TopicPartition) {
    let part = log.partition(tp).await.unwrap();
    while crate::seal::maybe_seal(&log.inner, &part, true).await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_right_after_a_seal_need_no_get_and_a_restart_reads_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket();
    let meta = Arc::new(EmbeddedMetadata::open(dir.path()).unwrap());
    let topic = meta.create_topic("t", 1, Default::default()).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    let timeout = Duration::from_secs(5);
    let log = open(&bucket, &meta, &topic).await;

    // Two segments: batches 0..12 sealed, then 12..20 sealed.
    for (range, wal) in [(0..12, 1), (12..20, 2)] {
        for i in range {
            log.append(&tp, &client_batch(i), timeout).await.unwrap();
        }
        assert!(log.inner.flush_once(wal).await);
        seal_all(&log, &tp).await;
    }
    let part = log.partition(&tp).await.unwrap();
    {
        let st = part.lock();
        assert!(st.mem.is_empty(), "the whole tail is sealed");
        assert_eq!(st.hw, 39);
    }
    let segments = meta.manifest(&tp).await.unwrap().segments;
    assert_eq!(
        segments
            .iter()
            .map(|s| (s.base_offset, s.last_offset))
            .collect::<Vec<_>>(),
        vec![(0, 23), (24, 38)]
    );
    // Each segment in the bucket has several row groups (read past the
    // counting layer, so the count below stays the reads' own).
    for s in &segments {
        let file = bucket
            .bytes
            .get(&Path::from(s.key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let footer = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .unwrap();
        assert!(footer.num_row_groups() > 1, "{}", s.key);
    }

    // Read back from offset 0 across both segments: no GET at all.
    let gets = bucket.gets();
    let sealed = read_all(&log, &tp).await;
    assert_eq!(
        bucket.gets() - gets,
        0,
        "sealed reads served from the cache"
    );
    assert_eq!(contents(&sealed), expected(20));

    // Still served with every bucket request failing.
    bucket.faults.set_down(true);
    assert_eq!(read_all(&log, &tp).await, sealed);
    assert_eq!(bucket.faults.injected(), 0, "no request reached the bucket");
    bucket.faults.set_down(false);
    drop((part, log));

    // A fresh log over the same bucket and metadata has an empty cache: the
    // same batches come from GETs of the segments.
    let log = open(&bucket, &meta, &topic).await;
    let gets = bucket.gets();
    let cold = read_all(&log, &tp).await;
    assert!(bucket.gets() > gets, "a cold read GETs the segments");
    assert_eq!(contents(&cold), expected(20));
    assert_eq!(cold, sealed, "same bytes as served from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_reads_return_the_batches_as_appended() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket();
    let meta = Arc::new(EmbeddedMetadata::open(dir.path()).unwrap());
    let topic = meta.create_topic("t", 1, Default::default()).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    let log = open(&bucket, &meta, &topic).await;
    for i in 0..9 {
        let (_, res) = log
            .append(&tp, &client_batch(i), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(res.base_offset, expected(i + 1)[i].0);
    }
    assert!(log.inner.flush_once(1).await);
    // Before the seal the tail is read from memory: the appended batches as stored.
    let appended = read_all(&log, &tp).await;
    assert_eq!(contents(&appended), expected(9));
    seal_all(&log, &tp).await;
    assert!(log.partition(&tp).await.unwrap().lock().mem.is_empty());
    let gets = bucket.gets();
    let sealed = read_all(&log, &tp).await;
    assert_eq!(bucket.gets(), gets, "no GET");
    // Byte for byte what was appended: same batches, offsets, values, CRCs.
    assert_eq!(sealed, appended);
    // A read from the middle of a batch returns that whole batch first.
    let res = log.read(&tp, 4, 1, 1 << 20).await.unwrap();
    assert_eq!(res.batches.first(), Some(&appended[2]));
    assert_eq!(parse_header(&appended[2]).unwrap().base_offset, 3);
    assert_eq!(bucket.gets(), gets, "still no GET");
}
