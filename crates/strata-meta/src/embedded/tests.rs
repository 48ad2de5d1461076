use super::*;
use crate::WalRange;

fn range(key: &str, base: i64, last: i64) -> WalRange {
    WalRange {
        key: key.into(),
        start: 0,
        end: 10,
        base_offset: base,
        last_offset: last,
        max_timestamp: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopen_and_stale_epochs_are_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("orders", 0);
    {
        let m = EmbeddedMetadata::open(dir.path()).unwrap();
        m.create_topic("orders", 2, BTreeMap::new()).await.unwrap();
        assert!(matches!(
            m.create_topic("orders", 1, BTreeMap::new()).await,
            Err(MetaError::TopicExists(_))
        ));
        let man = m.acquire_partition(&tp, 1).await.unwrap();
        assert_eq!(man.leader_epoch, 1);
        let r = m
            .commit_wal(vec![WalCommit {
                tp: tp.clone(),
                epoch: 1,
                range: range("wal/a", 0, 9),
            }])
            .await
            .unwrap();
        assert!(r[0].is_ok());
        // A retry of the same commit is harmless.
        let r = m
            .commit_wal(vec![WalCommit {
                tp: tp.clone(),
                epoch: 1,
                range: range("wal/a", 0, 9),
            }])
            .await
            .unwrap();
        assert!(r[0].is_ok());
        let r = m
            .commit_wal(vec![WalCommit {
                tp: tp.clone(),
                epoch: 0,
                range: range("wal/b", 10, 19),
            }])
            .await
            .unwrap();
        assert!(r[0].as_ref().unwrap_err().is_fenced());
    }
    let m = EmbeddedMetadata::open(dir.path()).unwrap();
    let man = m.manifest(&tp).await.unwrap();
    assert_eq!(man.end_offset, 10);
    assert_eq!(man.wal.len(), 1);
    let man = m.acquire_partition(&tp, 1).await.unwrap();
    assert_eq!(man.leader_epoch, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealing_orphans_wal_objects_only_when_unreferenced() {
    let dir = tempfile::tempdir().unwrap();
    let m = EmbeddedMetadata::open(dir.path()).unwrap();
    m.create_topic("t", 2, BTreeMap::new()).await.unwrap();
    let p0 = TopicPartition::new("t", 0);
    let p1 = TopicPartition::new("t", 1);
    m.acquire_partition(&p0, 1).await.unwrap();
    m.acquire_partition(&p1, 1).await.unwrap();
    m.commit_wal(vec![
        WalCommit {
            tp: p0.clone(),
            epoch: 1,
            range: range("wal/1", 0, 4),
        },
        WalCommit {
            tp: p1.clone(),
            epoch: 1,
            range: range("wal/1", 0, 4),
        },
    ])
    .await
    .unwrap();
    let seg = |last| SegmentEntry {
        base_offset: 0,
        last_offset: last,
        key: "s".into(),
        size_bytes: 1,
        max_timestamp: 0,
        producers: None,
    };
    assert!(m.commit_segment(&p0, 1, seg(4)).await.unwrap().is_empty());
    assert_eq!(
        m.commit_segment(&p1, 1, seg(4)).await.unwrap(),
        vec!["wal/1"]
    );
    assert!(matches!(
        m.commit_segment(&p1, 1, seg(99)).await,
        Err(MetaError::InvalidOffset(99))
    ));
    let freed = m.truncate_front(&p0, 1, 5).await.unwrap();
    assert_eq!(freed.segments.len(), 1);
    assert_eq!(m.manifest(&p0).await.unwrap().log_start_offset, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_unique_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedMetadata::open(dir.path())
        .unwrap()
        .allocate_producer_id()
        .await
        .unwrap();
    let b = EmbeddedMetadata::open(dir.path())
        .unwrap()
        .allocate_producer_id()
        .await
        .unwrap();
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_frees_only_wal_objects_no_other_topic_uses() {
    let dir = tempfile::tempdir().unwrap();
    let m = EmbeddedMetadata::open(dir.path()).unwrap();
    m.create_topic("gone", 1, BTreeMap::new()).await.unwrap();
    m.create_topic("kept", 1, BTreeMap::new()).await.unwrap();
    let gone = TopicPartition::new("gone", 0);
    let kept = TopicPartition::new("kept", 0);
    m.acquire_partition(&gone, 1).await.unwrap();
    m.acquire_partition(&kept, 1).await.unwrap();
    let commit = |tp: &TopicPartition, key: &str, base| WalCommit {
        tp: tp.clone(),
        epoch: 1,
        range: range(key, base, base),
    };
    m.commit_wal(vec![
        commit(&gone, "wal/shared", 0),
        commit(&kept, "wal/shared", 0),
    ])
    .await
    .unwrap();
    m.commit_wal(vec![commit(&gone, "wal/own", 1)])
        .await
        .unwrap();
    let (_, freed) = m.delete_topic("gone").await.unwrap();
    assert_eq!(freed, vec!["wal/own".to_string()]);
    assert!(m.topic("gone").await.unwrap().is_none());
    assert_eq!(m.manifest(&kept).await.unwrap().wal.len(), 1);
}

#[tokio::test]
async fn committed_offsets_survive_reopen_and_follow_topic_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let tp = |t: &str, p| TopicPartition::new(t, p);
    let off = |o| CommittedOffset {
        offset: o,
        leader_epoch: -1,
        metadata: format!("m{o}"),
        commit_timestamp: 1,
    };
    {
        let m = EmbeddedMetadata::open(dir.path()).unwrap();
        m.create_topic("a", 2, Default::default()).await.unwrap();
        m.create_topic("b", 1, Default::default()).await.unwrap();
        m.commit_offsets("g", vec![(tp("a", 0), off(5)), (tp("a", 1), off(7))])
            .await
            .unwrap();
        m.commit_offsets("g", vec![(tp("a", 0), off(6)), (tp("b", 0), off(1))])
            .await
            .unwrap();
        m.commit_offsets("h", vec![(tp("b", 0), off(2))])
            .await
            .unwrap();
    }
    let m = EmbeddedMetadata::open(dir.path()).unwrap();
    let mut g = m.fetch_offsets("g").await.unwrap();
    g.sort_by(|x, y| (&*x.0.topic, x.0.partition).cmp(&(&*y.0.topic, y.0.partition)));
    assert_eq!(
        g,
        vec![
            (tp("a", 0), off(6)),
            (tp("a", 1), off(7)),
            (tp("b", 0), off(1))
        ]
    );
    assert_eq!(m.offset_groups().await.unwrap(), vec!["g", "h"]);
    m.delete_topic("b").await.unwrap();
    assert_eq!(m.offset_groups().await.unwrap(), vec!["g"]);
    m.delete_offsets("g", Some(vec![tp("a", 1)])).await.unwrap();
    assert_eq!(
        m.fetch_offsets("g").await.unwrap(),
        vec![(tp("a", 0), off(6))]
    );
    m.delete_offsets("g", None).await.unwrap();
    assert!(m.fetch_offsets("g").await.unwrap().is_empty());
    assert!(m.offset_groups().await.unwrap().is_empty());
}
