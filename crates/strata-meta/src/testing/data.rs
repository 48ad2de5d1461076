//! Conformance checks on the durable data: topics, manifests (fencing, WAL
//! commits, segments, truncation) and committed offsets.

use std::collections::BTreeMap;

use super::{
    commit, commit_ok, configs, expect_err, led_topic, manifest, offset, range, segment, tp, Run,
};
use crate::{Freed, MetaError, Metadata, ProducerBatch, ProducerEntry, ProducerSnapshot};

pub(super) async fn topics(m: &dyn Metadata, run: &Run) {
    let name = run.name("topics");
    let cfg = configs(&[("retention.ms", "3600000"), ("cleanup.policy", "delete")]);
    let t = m
        .create_topic(&name, 2, cfg.clone())
        .await
        .expect("create topic");
    assert_eq!((t.name.as_str(), t.partitions), (name.as_str(), 2));
    assert_eq!(t.configs, cfg, "overrides are kept as given");
    assert_eq!(m.topic(&name).await.expect("topic"), Some(t.clone()));
    let all = m.topics().await.expect("topics");
    assert!(all.contains(&t), "topics() lists {name}");

    expect_err(
        m.create_topic(&name, 1, BTreeMap::new()).await,
        "creating an existing topic",
        |e| matches!(e, MetaError::TopicExists(n) if *n == name),
    );
    expect_err(
        m.create_topic(&run.name("no-partitions"), 0, BTreeMap::new())
            .await,
        "creating a topic with no partitions",
        |e| matches!(e, MetaError::InvalidPartitions(_)),
    );
    assert!(m
        .topic(&run.name("never-created"))
        .await
        .expect("topic")
        .is_none());

    for p in 0..2 {
        let man = manifest(m, &tp(&name, p)).await;
        assert_eq!(man.leader, -1, "a new partition has no leader");
        assert_eq!((man.log_start_offset, man.end_offset), (0, 0));
        assert!(man.segments.is_empty() && man.wal.is_empty());
    }
    expect_err(
        m.manifest(&tp(&name, 2)).await,
        "manifest of a partition past the count",
        |e| matches!(e, MetaError::UnknownPartition(x) if *x == tp(&name, 2)),
    );
}

pub(super) async fn partitions_and_configs(m: &dyn Metadata, run: &Run) {
    let name = run.name("grow");
    let created = m
        .create_topic(&name, 1, configs(&[("retention.ms", "1000")]))
        .await
        .expect("create");
    let grown = m.create_partitions(&name, 3).await.expect("grow");
    assert_eq!(grown.partitions, 3);
    assert_eq!(grown.id, created.id, "growing keeps the topic id");
    assert_eq!(manifest(m, &tp(&name, 2)).await.leader, -1);
    for total in [3, 2] {
        expect_err(
            m.create_partitions(&name, total).await,
            "growing to no more partitions",
            |e| matches!(e, MetaError::InvalidPartitions(_)),
        );
    }
    expect_err(
        m.create_partitions(&run.name("missing"), 5).await,
        "growing an unknown topic",
        |e| matches!(e, MetaError::UnknownTopic(_)),
    );

    let replaced = configs(&[("segment.ms", "60000")]);
    let t = m
        .set_topic_configs(&name, replaced.clone())
        .await
        .expect("set configs");
    assert_eq!(t.configs, replaced, "configs are replaced, not merged");
    assert_eq!(m.topic(&name).await.expect("topic").expect("exists"), t);
    expect_err(
        m.set_topic_configs(&run.name("missing"), replaced).await,
        "configuring an unknown topic",
        |e| matches!(e, MetaError::UnknownTopic(_)),
    );
}

pub(super) async fn delete_topic(m: &dyn Metadata, run: &Run) {
    let gone = run.name("gone");
    let kept = run.name("kept");
    let b = run.broker(1);
    let ge = led_topic(m, &gone, 1, b).await[0];
    let ke = led_topic(m, &kept, 1, b).await[0];
    let shared = run.name("wal-shared");
    let own = run.name("wal-own");
    let results = m
        .commit_wal(vec![
            commit(&tp(&gone, 0), ge, range(&shared, 0, 0)),
            commit(&tp(&kept, 0), ke, range(&shared, 0, 0)),
        ])
        .await
        .expect("commit");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    commit_ok(m, commit(&tp(&gone, 0), ge, range(&own, 1, 1))).await;
    let group = run.name("group-of-gone");
    m.commit_offsets(
        &group,
        vec![(tp(&gone, 0), offset(1)), (tp(&kept, 0), offset(2))],
    )
    .await
    .expect("commit offsets");

    let (t, orphans) = m.delete_topic(&gone).await.expect("delete");
    assert_eq!(t.name, gone);
    assert_eq!(orphans, vec![own], "only WAL objects nothing else uses");
    assert!(m.topic(&gone).await.expect("topic").is_none());
    assert!(!m
        .topics()
        .await
        .expect("topics")
        .iter()
        .any(|t| t.name == gone));
    expect_err(
        m.manifest(&tp(&gone, 0)).await,
        "manifest of deleted",
        |e| matches!(e, MetaError::UnknownPartition(_)),
    );
    expect_err(
        m.delete_topic(&gone).await,
        "deleting twice",
        |e| matches!(e, MetaError::UnknownTopic(n) if *n == gone),
    );
    assert_eq!(manifest(m, &tp(&kept, 0)).await.wal.len(), 1);
    assert_eq!(
        m.fetch_offsets(&group).await.expect("fetch"),
        vec![(tp(&kept, 0), offset(2))],
        "a deleted topic's committed offsets go with it"
    );
}

pub(super) async fn leadership_and_wal(m: &dyn Metadata, run: &Run) {
    let name = run.name("leaders");
    let p0 = tp(&name, 0);
    let p1 = tp(&name, 1);
    m.create_topic(&name, 2, BTreeMap::new())
        .await
        .expect("create");
    let initial = manifest(m, &p0).await.leader_epoch;
    let (b1, b2) = (run.broker(1), run.broker(2));
    let first = m.acquire_partition(&p0, b1).await.expect("acquire");
    assert_eq!(first.leader, b1);
    assert!(first.leader_epoch > initial, "acquiring raises the epoch");
    let second = m.acquire_partition(&p0, b2).await.expect("re-acquire");
    assert_eq!(second.leader, b2);
    assert!(second.leader_epoch > first.leader_epoch);
    let (old, epoch) = (first.leader_epoch, second.leader_epoch);
    let man = manifest(m, &p0).await;
    assert_eq!((man.leader, man.leader_epoch), (b2, epoch));
    expect_err(
        m.acquire_partition(&tp(&name, 9), b1).await,
        "acquiring an unknown partition",
        |e| matches!(e, MetaError::UnknownPartition(_)),
    );

    let key_a = run.name("wal-a");
    let r = m
        .commit_wal(vec![commit(&p0, old, range(&key_a, 0, 9))])
        .await
        .expect("call");
    match &r[..] {
        [Err(MetaError::Fenced { tp, current, given })] => {
            assert_eq!((tp, *current, *given), (&p0, epoch, old));
        }
        other => panic!("stale epoch commit: {other:?}"),
    }
    assert_eq!(
        manifest(m, &p0).await.end_offset,
        0,
        "fenced commits change nothing"
    );

    commit_ok(m, commit(&p0, epoch, range(&key_a, 0, 9))).await;
    let after = manifest(m, &p0).await;
    assert_eq!(after.end_offset, 10);
    assert_eq!(after.wal, vec![range(&key_a, 0, 9)]);
    // A flush retried after a lost reply must not double-commit.
    commit_ok(m, commit(&p0, epoch, range(&key_a, 0, 9))).await;
    assert_eq!(manifest(m, &p0).await, after, "a re-sent commit is a no-op");

    let r = m
        .commit_wal(vec![commit(
            &p0,
            epoch,
            range(&run.name("wal-gap"), 15, 19),
        )])
        .await
        .expect("call");
    match &r[..] {
        [Err(MetaError::OffsetMismatch { tp, end, given })] => {
            assert_eq!((tp, *end, *given), (&p0, 10, 15));
        }
        other => panic!("gapped commit: {other:?}"),
    }

    // One call, three partitions, three independent outcomes.
    let key_b = run.name("wal-b");
    let r = m
        .commit_wal(vec![
            commit(&p0, epoch, range(&key_b, 10, 14)),
            commit(&p1, 99, range(&key_b, 0, 4)),
            commit(&tp(&name, 7), 1, range(&key_b, 0, 4)),
        ])
        .await
        .expect("call");
    assert_eq!(r.len(), 3, "one result per commit");
    assert!(r[0].is_ok(), "{r:?}");
    assert!(r[1].as_ref().is_err_and(MetaError::is_fenced), "{r:?}");
    assert!(matches!(r[2], Err(MetaError::UnknownPartition(_))), "{r:?}");
    assert_eq!(manifest(m, &p0).await.end_offset, 15);
    assert_eq!(manifest(m, &p1).await.end_offset, 0);
}

fn snapshot() -> ProducerSnapshot {
    ProducerSnapshot {
        complete: true,
        producers: vec![ProducerEntry {
            producer_id: 4242,
            epoch: 3,
            last_seen_ms: 1_700_000_000_123,
            batches: vec![
                ProducerBatch {
                    first_seq: 0,
                    last_seq: 1,
                    base_offset: 0,
                    last_offset: 1,
                    timestamp: 10,
                },
                ProducerBatch {
                    first_seq: 2,
                    last_seq: 4,
                    base_offset: 2,
                    last_offset: 4,
                    timestamp: 11,
                },
            ],
        }],
    }
}

pub(super) async fn segments(m: &dyn Metadata, run: &Run) {
    let name = run.name("segments");
    let (p0, p1) = (tp(&name, 0), tp(&name, 1));
    let epochs = led_topic(m, &name, 2, run.broker(1)).await;
    let (e0, e1) = (epochs[0], epochs[1]);
    let (s1, s2) = (run.name("wal-s1"), run.name("wal-s2"));
    let r = m
        .commit_wal(vec![
            commit(&p0, e0, range(&s1, 0, 4)),
            commit(&p1, e1, range(&s1, 0, 4)),
        ])
        .await
        .expect("commit");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    commit_ok(m, commit(&p0, e0, range(&s2, 5, 9))).await;

    expect_err(
        m.commit_segment(&p0, e0 - 1, segment(0, 4)).await,
        "sealing under a stale epoch",
        MetaError::is_fenced,
    );
    expect_err(
        m.commit_segment(&p0, e0, segment(0, 10)).await,
        "sealing past the end offset",
        |e| matches!(e, MetaError::InvalidOffset(_)),
    );

    let mut first = segment(0, 4);
    first.producers = Some(snapshot());
    let orphans = m
        .commit_segment(&p0, e0, first.clone())
        .await
        .expect("seal");
    assert!(
        orphans.is_empty(),
        "{s1} is still used by {p1}: {orphans:?}"
    );
    let man = manifest(m, &p0).await;
    assert_eq!(man.segments, vec![first.clone()], "producer state is kept");
    assert_eq!(man.wal, vec![range(&s2, 5, 9)], "covered WAL ranges go");
    assert_eq!(man.end_offset, 10, "sealing does not move the end");

    let orphans = m
        .commit_segment(&p1, e1, segment(0, 4))
        .await
        .expect("seal");
    assert_eq!(orphans, vec![s1], "the last reference orphans the object");

    let orphans = m
        .commit_segment(&p0, e0, segment(5, 9))
        .await
        .expect("seal");
    assert_eq!(orphans, vec![s2]);
    let man = manifest(m, &p0).await;
    assert_eq!(man.segments, vec![first, segment(5, 9)]);
    assert!(man.wal.is_empty());
}

pub(super) async fn truncation(m: &dyn Metadata, run: &Run) {
    let name = run.name("truncate");
    let p = tp(&name, 0);
    let e = led_topic(m, &name, 1, run.broker(1)).await[0];
    let (k1, k2) = (run.name("wal-t1"), run.name("wal-t2"));
    commit_ok(m, commit(&p, e, range(&k1, 0, 4))).await;
    commit_ok(m, commit(&p, e, range(&k2, 5, 9))).await;
    let orphans = m.commit_segment(&p, e, segment(0, 4)).await.expect("seal");
    assert_eq!(orphans, vec![k1]);

    expect_err(
        m.truncate_front(&p, e + 1, 3).await,
        "truncating under another epoch",
        MetaError::is_fenced,
    );
    for bad in [11, -1] {
        expect_err(
            m.truncate_front(&p, e, bad).await,
            "truncating outside the log",
            |e| matches!(e, MetaError::InvalidOffset(o) if *o == bad),
        );
    }
    let freed = m.truncate_front(&p, e, 3).await.expect("truncate");
    assert_eq!(
        freed,
        Freed::default(),
        "a partly kept segment is not freed"
    );
    assert_eq!(manifest(m, &p).await.log_start_offset, 3);
    let freed = m.truncate_front(&p, e, 2).await.expect("truncate back");
    assert_eq!(freed, Freed::default());
    assert_eq!(
        manifest(m, &p).await.log_start_offset,
        3,
        "the start never moves back"
    );

    let freed = m.truncate_front(&p, e, 7).await.expect("truncate");
    assert_eq!(freed.segments, vec![segment(0, 4)]);
    assert!(freed.wal_keys.is_empty(), "{k2} still holds 7..=9");
    let man = manifest(m, &p).await;
    assert_eq!(man.log_start_offset, 7);
    assert!(man.segments.is_empty());
    assert_eq!(man.wal, vec![range(&k2, 5, 9)]);

    let freed = m.truncate_front(&p, e, 10).await.expect("truncate all");
    assert_eq!(freed.wal_keys, vec![k2]);
    assert!(freed.segments.is_empty());
    let man = manifest(m, &p).await;
    assert_eq!((man.log_start_offset, man.end_offset), (10, 10));
    assert!(man.wal.is_empty());
}

pub(super) async fn offsets(m: &dyn Metadata, run: &Run) {
    let name = run.name("offsets");
    m.create_topic(&name, 2, BTreeMap::new())
        .await
        .expect("create");
    let (p0, p1) = (tp(&name, 0), tp(&name, 1));
    let group = run.name("group");
    assert!(m.fetch_offsets(&group).await.expect("fetch").is_empty());
    m.commit_offsets(&group, vec![])
        .await
        .expect("empty commit");

    m.commit_offsets(
        &group,
        vec![(p0.clone(), offset(5)), (p1.clone(), offset(7))],
    )
    .await
    .expect("commit");
    m.commit_offsets(&group, vec![(p0.clone(), offset(6))])
        .await
        .expect("recommit");
    let sorted = |mut v: Vec<(strata_common::TopicPartition, crate::CommittedOffset)>| {
        v.sort_by_key(|(tp, _)| tp.partition);
        v
    };
    assert_eq!(
        sorted(m.fetch_offsets(&group).await.expect("fetch")),
        vec![(p0.clone(), offset(6)), (p1.clone(), offset(7))],
        "a commit replaces only the partitions it names"
    );
    let groups = m.offset_groups().await.expect("groups");
    assert!(groups.contains(&group), "{group} listed in {groups:?}");

    m.delete_offsets(&group, Some(vec![p1.clone()]))
        .await
        .expect("delete one");
    assert_eq!(
        m.fetch_offsets(&group).await.expect("fetch"),
        vec![(p0.clone(), offset(6))]
    );
    m.delete_offsets(&group, None).await.expect("delete all");
    assert!(m.fetch_offsets(&group).await.expect("fetch").is_empty());
    let groups = m.offset_groups().await.expect("groups");
    assert!(!groups.contains(&group), "an emptied group is not listed");
    m.delete_offsets(&run.name("no-group"), None)
        .await
        .expect("deleting an unknown group's offsets");
}
