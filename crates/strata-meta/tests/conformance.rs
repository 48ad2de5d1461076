//! The metadata conformance suite against every backend this crate has:
//! the embedded one directly, and the same behind the gRPC service and
//! client, which must be indistinguishable from it.

use std::sync::Arc;

use strata_common::SystemClock;
use strata_meta::grpc::{serve_meta, RemoteMetadata};
use strata_meta::testing::conformance_suite;
use strata_meta::{EmbeddedMetadata, Metadata};
use tokio_util::sync::CancellationToken;

/// Short, so the suite's wait for an expired session is short too.
const SESSION_TIMEOUT_MS: i64 = 1_000;

fn embedded(dir: &tempfile::TempDir) -> Arc<dyn Metadata> {
    Arc::new(
        EmbeddedMetadata::open(dir.path())
            .expect("open")
            .with_sessions(SESSION_TIMEOUT_MS, Arc::new(SystemClock)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance_suite(embedded(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_and_server_conform() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded(&dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_meta(listener, backend.clone(), shutdown.clone()));

    let remote = RemoteMetadata::connect(&format!("http://{addr}"))
        .await
        .expect("connect");
    assert_eq!(remote.cluster_id(), backend.cluster_id());
    conformance_suite(Arc::new(remote)).await;

    shutdown.cancel();
    server.await.unwrap().expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_can_run_twice_against_one_backend() {
    let dir = tempfile::tempdir().unwrap();
    let backend = embedded(&dir);
    conformance_suite(backend.clone()).await;
    conformance_suite(backend).await;
}
