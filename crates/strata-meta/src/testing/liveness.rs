//! Conformance checks on what lives only as long as brokers do: sessions,
//! and the cluster view brokers read leadership from.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{expect_err, tp, Run};
use crate::{BrokerInfo, MetaError, Metadata, PartitionLeader};

/// Longest wait for a session to lapse; backends' timeouts are seconds.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(60);

fn broker(id: i32, port: i32) -> BrokerInfo {
    BrokerInfo {
        id,
        host: format!("broker-{id}.test"),
        port,
    }
}

pub(super) async fn cluster_view(m: &dyn Metadata, run: &Run) {
    let name = run.name("view");
    m.create_topic(&name, 2, BTreeMap::new())
        .await
        .expect("create");
    let leader = run.broker(10);
    let man = m
        .acquire_partition(&tp(&name, 0), leader)
        .await
        .expect("acquire");
    let view = m.cluster().await.expect("cluster");
    let ours: Vec<&PartitionLeader> = view
        .leaders
        .iter()
        .filter(|l| *l.tp.topic == *name)
        .collect();
    assert_eq!(ours.len(), 2, "every partition once: {ours:?}");
    let p0 = ours
        .iter()
        .find(|l| l.tp.partition == 0)
        .expect("p0 listed");
    assert_eq!((p0.leader, p0.epoch), (leader, man.leader_epoch));
    let p1 = ours
        .iter()
        .find(|l| l.tp.partition == 1)
        .expect("p1 listed");
    assert_eq!(p1.leader, -1, "an unassigned partition has no leader");

    // Whether this replica may assign depends on the others the backend
    // knows of; a lone question must still be answered.
    m.assignment_leader(&run.name("replica"))
        .await
        .expect("assignment_leader");
}

pub(super) async fn brokers(m: &dyn Metadata, run: &Run) {
    let (a, b) = (run.broker(20), run.broker(21));
    expect_err(
        m.heartbeat_broker(a).await,
        "heartbeat before registering",
        |e| matches!(e, MetaError::UnknownBroker(id) if *id == a),
    );

    m.register_broker(broker(b, 9093)).await.expect("register");
    m.register_broker(broker(a, 9092)).await.expect("register");
    m.heartbeat_broker(a)
        .await
        .expect("heartbeat a live broker");
    let view = m.cluster().await.expect("cluster");
    assert!(
        view.brokers.contains(&broker(a, 9092)),
        "{:?}",
        view.brokers
    );
    assert!(
        view.brokers.contains(&broker(b, 9093)),
        "{:?}",
        view.brokers
    );
    assert!(
        view.brokers.windows(2).all(|w| w[0].id < w[1].id),
        "brokers sorted by id, each once: {:?}",
        view.brokers
    );

    // A broker that restarts on another port re-registers under its id.
    m.register_broker(broker(a, 9192))
        .await
        .expect("re-register");
    let view = m.cluster().await.expect("cluster");
    let listed: Vec<_> = view.brokers.iter().filter(|x| x.id == a).collect();
    assert_eq!(listed, vec![&broker(a, 9192)]);

    // Polling cluster() rather than heartbeating, which would extend it.
    let start = tokio::time::Instant::now();
    loop {
        let view = m.cluster().await.expect("cluster");
        if !view.brokers.iter().any(|x| x.id == a || x.id == b) {
            break;
        }
        assert!(
            start.elapsed() < EXPIRY_DEADLINE,
            "sessions of {a} and {b} never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    expect_err(
        m.heartbeat_broker(a).await,
        "heartbeat after the session expired",
        |e| matches!(e, MetaError::UnknownBroker(id) if *id == a),
    );
    m.register_broker(broker(a, 9092))
        .await
        .expect("register again");
    m.heartbeat_broker(a).await.expect("a new session");
}
