//! Object store faults under a live broker: while the store is down no
//! acks=all write is acknowledged; when it returns, everything continues
//! and nothing acknowledged is lost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_e2e::{consume, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_delays_acks_all_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let b = broker.bootstrap();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("enable.idempotence", "false")
        // Longer than the outage, so no retry can duplicate a record.
        .set("request.timeout.ms", "60000")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    // Warm up: topic exists and one record is durable.
    p.send(
        FutureRecord::to("outage")
            .partition(0)
            .key("k")
            .payload("before"),
        Duration::from_secs(10),
    )
    .await
    .expect("first delivery");

    broker.faults.set_down(true);
    let acked = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..200 {
        let p = p.clone();
        let acked = acked.clone();
        handles.push(tokio::spawn(async move {
            let v = format!("during-{i}");
            let r = p
                .send(
                    FutureRecord::to("outage").partition(0).key("k").payload(&v),
                    Duration::from_secs(120),
                )
                .await;
            acked.fetch_add(1, Ordering::SeqCst);
            r.map(|d| d.offset).map_err(|(e, _)| e.to_string())
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        acked.load(Ordering::SeqCst),
        0,
        "acks=all writes were acknowledged while the object store was down"
    );
    assert!(broker.faults.injected() > 0, "the outage was never hit");

    broker.faults.set_down(false);
    let mut offsets = Vec::new();
    for h in handles {
        offsets.push(
            h.await
                .unwrap()
                .expect("delivered after the store came back"),
        );
    }
    offsets.sort();
    assert_eq!(offsets, (1..=200).collect::<Vec<i64>>());
    let b2 = b.clone();
    let seen = tokio::task::spawn_blocking(move || {
        consume(&b2, "outage", 0, 0, 201, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 201);
    assert_eq!(seen[0].value.as_deref(), Some(&b"before"[..]));
    let mut values: Vec<_> = seen[1..]
        .iter()
        .map(|s| String::from_utf8(s.value.clone().unwrap()).unwrap())
        .collect();
    values.sort();
    let mut expected: Vec<_> = (0..200).map(|i| format!("during-{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_without_client_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let b = broker.bootstrap();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .create()
        .unwrap();
    p.send(
        FutureRecord::<(), _>::to("flaky")
            .partition(0)
            .payload("warm"),
        Duration::from_secs(10),
    )
    .await
    .expect("warm-up");
    for round in 0..5 {
        // Like S3's 503 SlowDown: a few failed PUTs, then success.
        broker.faults.fail_next(2);
        let d = p
            .send(
                FutureRecord::<(), _>::to("flaky")
                    .partition(0)
                    .payload(&format!("r{round}")),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered despite transient store errors");
        assert_eq!(d.offset, round + 1);
    }
    assert!(broker.faults.injected() >= 10);
    broker.stop().await;
}
