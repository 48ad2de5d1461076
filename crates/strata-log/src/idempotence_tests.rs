//! Idempotent appends at the partition and log level: refusals leave no
//! trace, retries get their original offsets, and the state survives a
//! change of leader through segment snapshots and the WAL tail.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::memory::InMemory;
use strata_common::config::TopicConfig;
use strata_common::{SystemClock, TopicPartition};
use strata_format::{encode_batch, BatchSpec, Record};
use strata_meta::{EmbeddedMetadata, Metadata, PartitionManifest};

use crate::partition::Partition;
use crate::{LogConfig, LogError, LogManager};

const PID: i64 = 42;

/// One batch of `count` records from producer `PID`, as a client sends it.
fn batch(epoch: i16, seq: i32, count: i64) -> Bytes {
    batch_of(PID, epoch, seq, count)
}

fn batch_of(producer_id: i64, epoch: i16, seq: i32, count: i64) -> Bytes {
    let spec = BatchSpec {
        base_offset: 0,
        partition_leader_epoch: -1,
        attributes: 0,
        producer_id,
        producer_epoch: epoch,
        base_sequence: seq,
    };
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            offset: i,
            timestamp: 1_000 + i,
            key: None,
            value: Some(Bytes::from(format!("seq-{}", i64::from(seq) + i))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&spec, &records)
}

fn fresh_partition() -> Partition {
    Partition::new(
        TopicPartition::new("t", 0),
        uuid::Uuid::nil(),
        TopicConfig::from_overrides(&Default::default()),
        &PartitionManifest::default(),
        Vec::new(),
        0,
    )
}

#[test]
fn a_gap_or_a_stale_epoch_is_refused_and_writes_nothing() {
    let p = fresh_partition();
    assert_eq!(p.append(&batch(0, 0, 3), 1).unwrap().base_offset, 0);
    assert!(matches!(
        p.append(&batch(0, 5, 1), 1),
        Err(LogError::OutOfOrderSequence {
            expected: 3,
            got: 5,
            ..
        })
    ));
    assert_eq!(p.append(&batch(1, 0, 2), 1).unwrap().base_offset, 3);
    assert!(matches!(
        p.append(&batch(0, 3, 1), 1),
        Err(LogError::InvalidProducerEpoch {
            epoch: 0,
            current: 1,
            ..
        })
    ));
    // An unknown producer on a partition that has forgotten nobody.
    assert!(matches!(
        p.append(&batch_of(7, 0, 9, 1), 1),
        Err(LogError::OutOfOrderSequence {
            expected: 0,
            got: 9,
            ..
        })
    ));
    let st = p.lock();
    assert_eq!(st.next_offset, 5);
    assert_eq!(st.mem.len(), 2);
}

#[test]
fn a_retry_is_answered_with_the_original_offsets() {
    let p = fresh_partition();
    let first = batch(0, 0, 3);
    p.append(&first, 1).unwrap();
    p.append(&batch(0, 3, 4), 2).unwrap();
    let again = p.append(&first, 3).unwrap();
    assert!(again.duplicate);
    assert_eq!((again.base_offset, again.last_offset), (0, 2));
    let st = p.lock();
    assert_eq!(st.next_offset, 7);
    assert_eq!(st.mem.len(), 2);
}

#[test]
fn a_request_with_one_bad_batch_keeps_none_of_its_batches() {
    let p = fresh_partition();
    let mut request = BytesMut::new();
    request.extend_from_slice(&batch(0, 0, 2));
    request.extend_from_slice(&batch(0, 2, 2));
    request.extend_from_slice(&batch(0, 9, 1));
    assert!(p.append(&request.freeze(), 1).is_err());
    assert_eq!(p.lock().next_offset, 0);
    // The state did not take the refused request's good batches either.
    let mut request = BytesMut::new();
    request.extend_from_slice(&batch(0, 0, 2));
    request.extend_from_slice(&batch(0, 2, 2));
    let res = p.append(&request.freeze(), 1).unwrap();
    assert_eq!((res.base_offset, res.last_offset), (0, 3));
}

async fn open(store: &Arc<InMemory>, meta: &Arc<EmbeddedMetadata>) -> LogManager {
    LogManager::open(
        LogConfig::default(),
        store.clone(),
        meta.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

/// Writes and commits what is pending; `n` names the WAL object and must
/// differ between calls.
async fn flush(log: &LogManager, n: u64) {
    assert!(log.inner.flush_once(n).await);
}

/// Seals the flushed tail, one batch per segment (segment.bytes is tiny).
async fn seal_all(log: &LogManager, tp: &TopicPartition) {
    let part = log.partition(tp).await.unwrap();
    while crate::seal::maybe_seal(&log.inner, &part, true).await {}
}

fn first_seqs(seg: &strata_meta::SegmentEntry) -> Vec<i32> {
    let snapshot = seg.producers.clone().expect("snapshot");
    assert!(snapshot.complete);
    snapshot.producers[0]
        .batches
        .iter()
        .map(|b| b.first_seq)
        .collect()
}

#[tokio::test]
async fn retries_are_recognised_by_a_new_leader_from_snapshot_and_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemory::new());
    let meta = Arc::new(EmbeddedMetadata::open(dir.path()).unwrap());
    let configs = [("segment.bytes".to_string(), "14".to_string())].into();
    let topic = meta.create_topic("t", 1, configs).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    let timeout = std::time::Duration::from_secs(5);

    let log = open(&store, &meta).await;
    log.open_topic(&topic).await.unwrap();
    // One WAL object for three batches, of which two get sealed, so the
    // object straddles the last segment; then two batches only in the WAL.
    for seq in [0, 2, 4] {
        log.append(&tp, &batch(0, seq, 2), timeout).await.unwrap();
    }
    flush(&log, 1).await;
    let part = log.partition(&tp).await.unwrap();
    for _ in 0..2 {
        assert!(crate::seal::maybe_seal(&log.inner, &part, true).await);
    }
    for seq in [6, 8] {
        log.append(&tp, &batch(0, seq, 2), timeout).await.unwrap();
    }
    flush(&log, 2).await;
    let manifest = meta.manifest(&tp).await.unwrap();
    assert_eq!(first_seqs(&manifest.segments[1]), vec![0, 2]);
    assert_eq!(manifest.wal.len(), 2);
    drop((part, log));

    let log = open(&store, &meta).await;
    log.open_topic(&topic).await.unwrap();
    // A retry of a sealed batch and of a WAL-only one.
    for (seq, base) in [(2, 2), (8, 8)] {
        let (_, res) = log.append(&tp, &batch(0, seq, 2), timeout).await.unwrap();
        assert!(res.duplicate, "seq {seq}");
        assert_eq!((res.base_offset, res.last_offset), (base, base + 1));
    }
    assert!(matches!(
        log.append(&tp, &batch(0, 11, 1), timeout).await,
        Err(LogError::OutOfOrderSequence { expected: 10, .. })
    ));
    let (_, res) = log.append(&tp, &batch(0, 10, 1), timeout).await.unwrap();
    assert_eq!((res.base_offset, res.duplicate), (10, false));
    flush(&log, 3).await;

    // Sealing resumes after the last segment, building on its snapshot.
    seal_all(&log, &tp).await;
    let manifest = meta.manifest(&tp).await.unwrap();
    let bases: Vec<i64> = manifest.segments.iter().map(|s| s.base_offset).collect();
    assert_eq!(bases, vec![0, 2, 4, 6, 8, 10]);
    assert_eq!(first_seqs(&manifest.segments[5]), vec![2, 4, 6, 8, 10]);
}

#[tokio::test]
async fn expired_producers_are_left_out_of_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemory::new());
    let meta = Arc::new(EmbeddedMetadata::open(dir.path()).unwrap());
    let topic = meta.create_topic("t", 1, Default::default()).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    let log = LogManager::open(
        LogConfig {
            producer_id_expiration_ms: 0,
            ..LogConfig::default()
        },
        store,
        meta.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    log.open_topic(&topic).await.unwrap();
    let timeout = std::time::Duration::from_secs(5);
    log.append(&tp, &batch(0, 0, 2), timeout).await.unwrap();
    flush(&log, 1).await;
    seal_all(&log, &tp).await;
    let snapshot = meta.manifest(&tp).await.unwrap().segments[0]
        .producers
        .clone()
        .unwrap();
    assert!(snapshot.producers.is_empty());
    assert!(!snapshot.complete);
    // Forgotten, so it may come back mid-sequence.
    let (_, res) = log.append(&tp, &batch(0, 5, 1), timeout).await.unwrap();
    assert_eq!(res.base_offset, 2);
}
