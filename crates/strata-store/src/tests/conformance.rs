use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::ObjectStore;

use crate::testing::{conformance_suite, MotoServer};
use crate::{
    open_s3, open_store, CountingStore, FaultyStore, PooledReads, RetryPolicy, RetryingStore,
    StoreMetrics,
};

fn decorated(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let (faulty, _faults) = FaultyStore::new(inner);
    let counting = CountingStore::new(Arc::new(faulty), StoreMetrics::new());
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let pooled = PooledReads::new(Arc::new(counting), 16 << 20);
    Arc::new(RetryingStore::new(Arc::new(pooled), policy))
}

#[tokio::test]
async fn local_filesystem_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store("", dir.path()).unwrap();
    conformance_suite(store).await;
}

#[tokio::test]
async fn in_memory_conforms() {
    conformance_suite(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn decorated_local_filesystem_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store("", dir.path()).unwrap();
    conformance_suite(decorated(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_s3_conforms() {
    let moto = MotoServer::start().await;
    moto.create_bucket("strata-conformance").await;

    // At the bucket root, under a prefix, and through the full decorator stack.
    let root = open_s3(&moto.s3_options("strata-conformance", "")).unwrap();
    conformance_suite(root).await;
    let prefixed = open_s3(&moto.s3_options("strata-conformance", "cluster/a")).unwrap();
    conformance_suite(Arc::clone(&prefixed)).await;
    conformance_suite(decorated(prefixed)).await;
}

/// The local filesystem cannot compare-and-swap, so the suite tolerates `NotImplemented`
/// for `PutMode::Update`; S3 must implement it, since fencing depends on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_s3_fences_stale_updates() {
    use object_store::path::Path;
    use object_store::{PutMode, UpdateVersion};

    let moto = MotoServer::start().await;
    moto.create_bucket("strata-fencing").await;
    let store = open_s3(&moto.s3_options("strata-fencing", "p")).unwrap();
    let key = Path::from("manifest");
    let v1 = store.put(&key, "epoch-1".into()).await.unwrap();
    let stale = UpdateVersion {
        e_tag: v1.e_tag.clone(),
        version: v1.version.clone(),
    };
    store
        .put_opts(
            &key,
            "epoch-2".into(),
            PutMode::Update(stale.clone()).into(),
        )
        .await
        .expect("update with the current etag");
    let err = store
        .put_opts(&key, "epoch-1-again".into(), PutMode::Update(stale).into())
        .await
        .expect_err("update with a stale etag");
    assert!(
        matches!(err, object_store::Error::Precondition { .. }),
        "{err}"
    );
    let body = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&body[..], b"epoch-2");
}
