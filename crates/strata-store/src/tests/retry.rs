use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode};

use crate::{is_transient, FaultHandle, FaultyStore, RetryPolicy, RetryingStore, StoreError};

fn policy(max_attempts: u32, attempt_timeout: Duration) -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        max_attempts,
        attempt_timeout,
    }
}

fn stack(policy: RetryPolicy) -> (Arc<RetryingStore>, FaultHandle) {
    let (faulty, faults) = FaultyStore::new(Arc::new(InMemory::new()));
    (
        Arc::new(RetryingStore::new(Arc::new(faulty), policy)),
        faults,
    )
}

fn key() -> Path {
    Path::from("wal/00000001")
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let (store, faults) = stack(policy(5, Duration::from_secs(5)));
    faults.fail_next(3);
    store
        .put(&key(), Bytes::from_static(b"batch").into())
        .await
        .unwrap();
    assert_eq!(faults.injected(), 3);
    assert_eq!(faults.attempts(), 4);

    faults.fail_next(2);
    let got = store.get_range(&key(), 0..3).await.unwrap();
    assert_eq!(&got[..], b"bat");
    assert_eq!(faults.injected(), 5);
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let (store, faults) = stack(policy(3, Duration::from_secs(5)));
    faults.fail_next(10);
    let err = store.head(&key()).await.unwrap_err();
    assert!(is_transient(&err), "{err}");
    assert!(StoreError::from(err).is_retriable());
    assert_eq!(faults.attempts(), 3);
}

#[tokio::test]
async fn outage_blocks_until_cleared_then_completes() {
    let (store, faults) = stack(policy(1000, Duration::from_secs(5)));
    faults.set_down(true);
    let writer = Arc::clone(&store);
    let put =
        tokio::spawn(async move { writer.put(&key(), Bytes::from_static(b"x").into()).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !put.is_finished(),
        "put must keep retrying while the store is down"
    );
    assert!(faults.injected() >= 3, "only {} faults", faults.injected());
    faults.set_down(false);
    put.await.unwrap().unwrap();
    assert_eq!(store.head(&key()).await.unwrap().size, 1);
}

#[tokio::test]
async fn stalled_attempts_are_abandoned_and_retried() {
    let (store, faults) = stack(policy(1000, Duration::from_millis(30)));
    store
        .put(&key(), Bytes::from_static(b"abc").into())
        .await
        .unwrap();
    let before = faults.attempts();
    faults.stall(true);
    let reader = Arc::clone(&store);
    let get = tokio::spawn(async move { reader.get_range(&key(), 0..2).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let attempts = faults.attempts() - before;
    assert!(
        attempts >= 3,
        "stalled attempt was not retried: {attempts} attempts"
    );
    assert!(!get.is_finished());
    faults.stall(false);
    assert_eq!(&get.await.unwrap().unwrap()[..], b"ab");
    assert_eq!(faults.injected(), 0, "stalls are not injected failures");
}

#[tokio::test]
async fn a_stalled_attempt_that_exhausts_the_budget_fails_as_transient() {
    let (store, faults) = stack(policy(2, Duration::from_millis(20)));
    faults.stall(true);
    let err = store.head(&key()).await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(is_transient(&err));
    assert_eq!(faults.attempts(), 2);
}

#[tokio::test]
async fn answers_about_the_object_are_not_retried() {
    let (store, faults) = stack(policy(5, Duration::from_secs(5)));
    store
        .put_opts(
            &key(),
            Bytes::from_static(b"1").into(),
            PutMode::Create.into(),
        )
        .await
        .unwrap();
    let before = faults.attempts();
    let err = store
        .put_opts(
            &key(),
            Bytes::from_static(b"2").into(),
            PutMode::Create.into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(
        faults.attempts() - before,
        1,
        "AlreadyExists must not be retried"
    );

    let before = faults.attempts();
    let err = store.get(&Path::from("missing")).await.unwrap_err();
    assert!(StoreError::from(err).is_not_found());
    assert_eq!(
        faults.attempts() - before,
        1,
        "NotFound must not be retried"
    );
}

#[tokio::test]
async fn faults_can_target_puts_only() {
    let (store, faults) = stack(policy(1, Duration::from_secs(5)));
    store
        .put(&key(), Bytes::from_static(b"x").into())
        .await
        .unwrap();
    faults.puts_only(true);
    faults.fail_next(1);
    store.head(&key()).await.expect("reads are not faulted");
    let err = store
        .put(&key(), Bytes::from_static(b"y").into())
        .await
        .unwrap_err();
    assert!(is_transient(&err));
    assert_eq!(faults.injected(), 1);
}

#[tokio::test]
async fn latency_delays_operations_and_lists_can_fail() {
    let (faulty, faults) = FaultyStore::new(Arc::new(InMemory::new()));
    faulty
        .put(&key(), Bytes::from_static(b"x").into())
        .await
        .unwrap();
    faults.set_latency(Duration::from_millis(40));
    let started = Instant::now();
    faulty.head(&key()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(40));
    faults.set_latency(Duration::ZERO);

    faults.fail_next(1);
    let listed: Result<Vec<_>, _> = faulty.list(None).try_collect().await;
    assert!(listed.is_err());
    let listed: Vec<_> = faulty.list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);
}
