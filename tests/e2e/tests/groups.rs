//! Consumer groups through librdkafka: committed offsets survive a broker
//! restart, and a group of two shares a topic's partitions.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_e2e::TestBroker;

async fn setup(bootstrap: &str, topic: &str, partitions: i32, records: usize, from: usize) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    if from == 0 {
        let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for r in admin
            .create_topics(&[t], &AdminOptions::new())
            .await
            .unwrap()
        {
            r.expect("topic created");
        }
    }
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in from..from + records {
        let v = format!("v{i}");
        p.send(
            FutureRecord::<(), _>::to(topic)
                .payload(&v)
                .partition((i % partitions as usize) as i32),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    }
}

fn member(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap()
}

/// Polls until `n` records arrived or `timeout` passed; commits each.
fn take(c: &BaseConsumer, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            c.commit_message(&m, CommitMode::Sync).expect("commit");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_restart_and_the_group_resumes_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bs = broker.bootstrap();
    setup(&bs, "orders", 3, 30, 0).await;
    let first = tokio::task::spawn_blocking({
        let bs = bs.clone();
        move || {
            let c = member(&bs, "billing");
            c.subscribe(&["orders"]).unwrap();
            let got = take(&c, 20, Duration::from_secs(30));
            c.unsubscribe();
            got
        }
    })
    .await
    .unwrap();
    assert_eq!(first.len(), 20);
    let lag = broker.broker.consumer_lag().await;
    // Commits are one past each record read; the partitions read so far
    // account for all 20 and each lag is what that partition has left.
    assert_eq!(lag.iter().map(|l| l.committed).sum::<i64>(), 20, "{lag:?}");
    assert!(lag
        .iter()
        .all(|l| l.group == "billing" && l.log_end == 10 && l.lag == 10 - l.committed));
    broker.stop().await;

    let broker = TestBroker::start(dir.path()).await;
    let bs = broker.bootstrap();
    setup(&bs, "orders", 3, 6, 30).await;
    let rest = tokio::task::spawn_blocking({
        let bs = bs.clone();
        move || {
            let c = member(&bs, "billing");
            c.subscribe(&["orders"]).unwrap();
            take(&c, 17, Duration::from_secs(8))
        }
    })
    .await
    .unwrap();
    let all: BTreeSet<String> = first.iter().chain(rest.iter()).cloned().collect();
    let want: BTreeSet<String> = (0..36).map(|i| format!("v{i}")).collect();
    assert_eq!(
        rest.len(),
        16,
        "only what was not committed comes back: {rest:?}"
    );
    assert_eq!(all, want);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_partitions_and_one_takes_all_when_the_other_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let bs = broker.bootstrap();
    setup(&bs, "events", 6, 60, 0).await;
    let result = tokio::task::spawn_blocking(move || {
        let a = member(&bs, "pair");
        let b = member(&bs, "pair");
        a.subscribe(&["events"]).unwrap();
        b.subscribe(&["events"]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let sizes = |c: &BaseConsumer| c.assignment().map(|a| a.count()).unwrap_or(0);
        while (sizes(&a), sizes(&b)) != (3, 3) && Instant::now() < deadline {
            let _ = a.poll(Duration::from_millis(50));
            let _ = b.poll(Duration::from_millis(50));
        }
        let split = (sizes(&a), sizes(&b));
        drop(a);
        let start = Instant::now();
        while sizes(&b) != 6 && Instant::now() < deadline {
            let _ = b.poll(Duration::from_millis(50));
        }
        (split, sizes(&b), start.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(result.0, (3, 3));
    assert_eq!(result.1, 6);
    assert!(result.2 < Duration::from_secs(6), "took {:?}", result.2);
    broker.stop().await;
}
