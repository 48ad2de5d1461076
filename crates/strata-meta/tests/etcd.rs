//! The etcd backend against real etcd processes: the conformance suite,
//! the same random script as the embedded backend with identical results,
//! and what only a shared, remote store can get wrong: replicas racing on
//! one etcd, leases running out, etcd dying and coming back.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

#[path = "etcd/script.rs"]
mod script;

use script::script;
use strata_common::TopicPartition;
use strata_meta::etcd::EtcdMetadata;
use strata_meta::testing::conformance_suite;
use strata_meta::testing::etcd::EtcdServer;
use strata_meta::{
    BrokerInfo, CommittedOffset, EmbeddedMetadata, MetaError, Metadata, SegmentEntry, WalCommit,
    WalRange,
};

/// etcd's shortest lease with the test server's raft timings.
const SESSION_TIMEOUT_MS: i64 = 1_000;

async fn connect(etcd: &EtcdServer, prefix: &str) -> EtcdMetadata {
    EtcdMetadata::connect(&[etcd.endpoint()], prefix, SESSION_TIMEOUT_MS)
        .await
        .expect("connect")
}

fn tp(topic: &str, p: i32) -> TopicPartition {
    TopicPartition::new(topic, p)
}

fn commit(tp: &TopicPartition, epoch: i32, key: &str, base: i64, last: i64) -> WalCommit {
    WalCommit {
        tp: tp.clone(),
        epoch,
        range: WalRange {
            key: key.to_string(),
            start: 0,
            end: 100,
            base_offset: base,
            last_offset: last,
            max_timestamp: last,
        },
    }
}

fn segment(key: &str, base: i64, last: i64) -> SegmentEntry {
    SegmentEntry {
        base_offset: base,
        last_offset: last,
        key: key.to_string(),
        size_bytes: 1,
        max_timestamp: last,
        producers: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_conforms() {
    let etcd = EtcdServer::start().await.expect("etcd");
    conformance_suite(Arc::new(connect(&etcd, "/conformance").await)).await;
}

/// Two replicas on one etcd run the suite at once, and a third splits every
/// change into transactions of at most eight operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_conforms_with_concurrent_replicas_and_small_transactions() {
    let etcd = EtcdServer::start().await.expect("etcd");
    let a = connect(&etcd, "/shared").await;
    let b = connect(&etcd, "/shared").await;
    let small = connect(&etcd, "/shared").await.with_max_txn_ops(8);
    assert_eq!(a.cluster_id(), b.cluster_id());
    tokio::join!(
        conformance_suite(Arc::new(a)),
        conformance_suite(Arc::new(b)),
        conformance_suite(Arc::new(small)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_answers_exactly_as_the_embedded_backend() {
    let etcd = EtcdServer::start().await.expect("etcd");
    for seed in [7, 2024, 99] {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedMetadata::open(dir.path()).unwrap();
        let want = script(&embedded, seed, 600).await;
        // Transactions of at most eight operations force every split path.
        let small = connect(&etcd, &format!("/script-{seed}"))
            .await
            .with_max_txn_ops(8);
        let got = script(&small, seed, 600).await;
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w, g, "seed {seed}: first difference");
        }
        assert_eq!(want.len(), got.len());
        // The script reached the interesting outcomes, not only errors.
        let count = |what: &str| want.iter().filter(|l| l.contains(what)).count();
        for what in [
            "Fenced",
            "OffsetMismatch",
            "seal t",
            ": Ok([\"wal/",
            "wal_keys: [\"wal/",
            "delete t",
            "UnknownPartition",
        ] {
            assert!(count(what) > 0, "seed {seed}: no {what} in the script");
        }
        eprintln!(
            "seed {seed}: {} lines, {} orphan reports",
            want.len(),
            count("[\"wal/")
        );
    }
}

/// Two replicas take leadership of one partition from each other while
/// committing as fast as they can: every accepted commit is in the final
/// manifest, contiguous, no refused one is, and epochs only grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_stay_exact_under_concurrent_acquire_and_commit() {
    let etcd = EtcdServer::start().await.expect("etcd");
    let a = connect(&etcd, "/fence").await;
    let b = connect(&etcd, "/fence").await;
    a.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    let p = tp("t", 0);

    let writer = |m: EtcdMetadata, broker: i32| {
        let p = p.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut fenced = 0;
            for round in 0..8 {
                let man = m.acquire_partition(&p, broker).await.unwrap();
                let (epoch, mut next) = (man.leader_epoch, man.end_offset);
                for n in 0..20 {
                    let key = format!("wal/{broker}/{round}/{n}");
                    let c = commit(&p, epoch, &key, next, next);
                    match m.commit_wal(vec![c]).await.unwrap().remove(0) {
                        Ok(()) => {
                            accepted.push((key, epoch));
                            next += 1;
                        }
                        Err(MetaError::Fenced { current, given, .. }) => {
                            assert!(current > given, "fenced by a newer epoch");
                            assert_eq!(given, epoch);
                            fenced += 1;
                            break;
                        }
                        Err(e) => panic!("broker {broker}: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (accepted, fenced)
        })
    };
    let (ra, rb) = tokio::join!(writer(a.clone(), 1), writer(b.clone(), 2));
    let ((acc_a, fenced_a), (acc_b, fenced_b)) = (ra.unwrap(), rb.unwrap());
    assert!(fenced_a + fenced_b > 0, "the replicas never raced");

    let man = b.manifest(&p).await.unwrap();
    let accepted: BTreeSet<String> = acc_a.iter().chain(&acc_b).map(|(k, _)| k.clone()).collect();
    let listed: BTreeSet<String> = man.wal.iter().map(|w| w.key.clone()).collect();
    assert_eq!(
        listed, accepted,
        "exactly the accepted commits are in the manifest"
    );
    assert_eq!(man.end_offset, accepted.len() as i64);
    for (i, w) in man.wal.iter().enumerate() {
        assert_eq!(w.base_offset, i as i64, "contiguous offsets");
    }
    let epoch_of: BTreeMap<&String, i32> =
        acc_a.iter().chain(&acc_b).map(|(k, e)| (k, *e)).collect();
    let epochs: Vec<i32> = man.wal.iter().map(|w| epoch_of[&w.key]).collect();
    assert!(
        epochs.windows(2).all(|w| w[0] <= w[1]),
        "epochs never go back: {epochs:?}"
    );

    // The loser of the last race stays fenced.
    let stale = man.leader_epoch - 1;
    let r = a
        .commit_wal(vec![commit(
            &p,
            stale,
            "wal/late",
            man.end_offset,
            man.end_offset,
        )])
        .await
        .unwrap();
    assert!(r[0].as_ref().unwrap_err().is_fenced());
}

/// Two partitions share each WAL object, committed and sealed through two
/// replicas at once: each object is reported orphaned exactly once, by
/// whichever seal dropped its last reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_orphans_are_reported_once_under_concurrent_seals() {
    let etcd = EtcdServer::start().await.expect("etcd");
    let a = connect(&etcd, "/refs").await;
    let b = connect(&etcd, "/refs").await;
    a.create_topic("s", 2, BTreeMap::new()).await.unwrap();
    let (p0, p1) = (tp("s", 0), tp("s", 1));
    let e0 = a.acquire_partition(&p0, 1).await.unwrap().leader_epoch;
    let e1 = b.acquire_partition(&p1, 2).await.unwrap().leader_epoch;
    for round in 0..15i64 {
        let key = format!("wal/shared/{round}");
        let (r0, r1) = tokio::join!(
            a.commit_wal(vec![commit(&p0, e0, &key, round, round)]),
            b.commit_wal(vec![commit(&p1, e1, &key, round, round)]),
        );
        assert!(r0.unwrap()[0].is_ok() && r1.unwrap()[0].is_ok());
        let (f0, f1) = tokio::join!(
            a.commit_segment(&p0, e0, segment(&format!("seg/0/{round}"), round, round)),
            b.commit_segment(&p1, e1, segment(&format!("seg/1/{round}"), round, round)),
        );
        let mut freed = f0.unwrap();
        freed.extend(f1.unwrap());
        assert_eq!(freed, vec![key], "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_assigns_and_the_role_moves_when_it_stops() {
    let etcd = EtcdServer::start().await.expect("etcd");
    let a = connect(&etcd, "/assign").await;
    let b = connect(&etcd, "/assign").await;
    let c = connect(&etcd, "/assign").await;
    for _ in 0..10 {
        let (x, y) = tokio::join!(a.assignment_leader("a"), b.assignment_leader("b"));
        assert!(
            x.unwrap() ^ y.unwrap(),
            "exactly one of two replicas assigns"
        );
    }
    let a_holds = a.assignment_leader("a").await.unwrap();
    let ((holder, holder_name), (other, other_name)) = if a_holds {
        ((a, "a"), (b, "b"))
    } else {
        ((b, "b"), (a, "a"))
    };
    // Renewing keeps the role past several lease lengths.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(holder.assignment_leader(holder_name).await.unwrap());
        assert!(!other.assignment_leader(other_name).await.unwrap());
    }
    // A holder that stops renewing loses the role once its lease runs out.
    drop(holder);
    let start = tokio::time::Instant::now();
    while !other.assignment_leader(other_name).await.unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the role never moved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "moved before the lease ran out"
    );
    assert!(!c.assignment_leader("c").await.unwrap());
    // Resigning hands it over at once.
    other.resign(other_name).await.unwrap();
    assert!(c.assignment_leader("c").await.unwrap());
    assert!(!other.assignment_leader(other_name).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sessions_live_on_heartbeats_through_any_replica() {
    let etcd = EtcdServer::start().await.expect("etcd");
    let a = connect(&etcd, "/sessions").await;
    let b = connect(&etcd, "/sessions").await;
    let info = BrokerInfo {
        id: 7,
        host: "h".into(),
        port: 9092,
    };
    a.register_broker(info.clone()).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.heartbeat_broker(7)
            .await
            .expect("heartbeat through the other replica");
    }
    assert_eq!(a.cluster().await.unwrap().brokers, vec![info]);
    let start = tokio::time::Instant::now();
    while !b.cluster().await.unwrap().brokers.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the session never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        a.heartbeat_broker(7).await,
        Err(MetaError::UnknownBroker(7))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_etcd_gives_retriable_errors_and_a_restart_keeps_everything() {
    let mut etcd = EtcdServer::start().await.expect("etcd");
    let m = connect(&etcd, "/restart").await;
    m.create_topic("r", 2, BTreeMap::new()).await.unwrap();
    let p = tp("r", 1);
    let epoch = m.acquire_partition(&p, 3).await.unwrap().leader_epoch;
    let r = m
        .commit_wal(vec![commit(&p, epoch, "wal/r", 0, 9)])
        .await
        .unwrap();
    assert!(r[0].is_ok());
    let offset = CommittedOffset {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 1,
    };
    m.commit_offsets("g", vec![(p.clone(), offset.clone())])
        .await
        .unwrap();
    let pid = m.allocate_producer_id().await.unwrap();
    let before = m.manifest(&p).await.unwrap();

    etcd.kill();
    let err = m.manifest(&p).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    let err = m
        .commit_wal(vec![commit(&p, epoch, "wal/s", 10, 19)])
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(m.topics().await.unwrap_err().is_retriable());
    assert!(m.heartbeat_broker(1).await.unwrap_err().is_retriable());
    assert!(m.allocate_producer_id().await.unwrap_err().is_retriable());

    etcd.restart().await.expect("restart");
    // The same client reconnects by itself.
    let start = tokio::time::Instant::now();
    let after = loop {
        match m.manifest(&p).await {
            Ok(man) => break man,
            Err(e) if e.is_retriable() && start.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(after, before);
    assert_eq!(m.topic("r").await.unwrap().unwrap().partitions, 2);
    assert_eq!(
        m.fetch_offsets("g").await.unwrap(),
        vec![(p.clone(), offset)]
    );
    assert!(m.allocate_producer_id().await.unwrap() > pid);
    let fresh = connect(&etcd, "/restart").await;
    assert_eq!(fresh.cluster_id(), m.cluster_id());
    let r = fresh
        .commit_wal(vec![commit(&p, epoch, "wal/s", 10, 19)])
        .await
        .unwrap();
    assert!(r[0].is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_to_a_live_endpoint() {
    let etcd = EtcdServer::start().await.expect("etcd");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let m = EtcdMetadata::connect(
        &[dead.clone(), etcd.endpoint()],
        "/failover",
        SESSION_TIMEOUT_MS,
    )
    .await
    .expect("connect through the live endpoint");
    m.create_topic("f", 1, BTreeMap::new()).await.unwrap();
    assert!(m.topic("f").await.unwrap().is_some());
    let err = EtcdMetadata::connect(&[dead], "/failover", SESSION_TIMEOUT_MS)
        .await
        .err()
        .expect("no live endpoint");
    assert!(err.is_retriable());
}

/// A replica that died between dropping references and releasing them
/// leaves a release record; the next seal, on any replica, finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_reference_releases_are_finished_by_the_next_seal() {
    let etcd = EtcdServer::start().await.expect("etcd");
    let m = connect(&etcd, "/abandoned").await;
    let put = |key: &str, value: &str| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd.endpoint(), "put", key, value])
            .output()
            .expect("etcdctl");
        assert!(out.status.success(), "{out:?}");
    };
    put("/abandoned/walrefs/wal/dead", "2");
    put(
        "/abandoned/releases/00000000000000000001-x",
        r#"{"refs":{"wal/dead":2}}"#,
    );
    m.create_topic("a", 1, BTreeMap::new()).await.unwrap();
    let p = tp("a", 0);
    let e = m.acquire_partition(&p, 1).await.unwrap().leader_epoch;
    m.commit_wal(vec![commit(&p, e, "wal/live", 0, 4)])
        .await
        .unwrap();
    let freed = m.commit_segment(&p, e, segment("seg", 0, 4)).await.unwrap();
    assert_eq!(freed, vec!["wal/dead".to_string(), "wal/live".to_string()]);
}
