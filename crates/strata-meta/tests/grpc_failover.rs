//! How `RemoteMetadata` behaves when replicas fail: transport trouble must
//! come back as a retriable `MetaError` (brokers retry those), and a call
//! must move on to another replica when the one it tried is gone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_meta::grpc::{serve_meta, RemoteMetadata, RemoteOptions};
use strata_meta::{EmbeddedMetadata, Metadata};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Replica {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<strata_meta::Result<()>>,
}

async fn replica_on(listener: TcpListener, backend: Arc<dyn Metadata>) -> Replica {
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_meta(listener, backend, shutdown.clone()));
    Replica {
        addr,
        shutdown,
        task,
    }
}

async fn replica(backend: Arc<dyn Metadata>) -> Replica {
    replica_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), backend).await
}

impl Replica {
    fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().expect("clean shutdown");
        // Lets the client read the server's GOAWAY before the next call.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn backend(dir: &tempfile::TempDir) -> Arc<dyn Metadata> {
    Arc::new(EmbeddedMetadata::open(dir.path()).unwrap())
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Accepts connections and never answers: a replica stopped with SIGSTOP.
async fn stalled_addr() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

fn quick() -> RemoteOptions {
    RemoteOptions {
        call_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_retriable_error_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&dir);
    let server = replica(backend.clone()).await;
    let addr = server.addr;
    let remote = RemoteMetadata::connect_with(&server.uri(), quick())
        .await
        .unwrap();
    remote
        .create_topic("before", 1, BTreeMap::new())
        .await
        .unwrap();

    server.stop().await;
    let e = remote.topics().await.unwrap_err();
    assert!(e.is_retriable(), "{e}");
    let e = remote
        .create_topic("during", 1, BTreeMap::new())
        .await
        .unwrap_err();
    assert!(e.is_retriable(), "{e}");
    assert!(!e.is_fenced());

    // The same address comes back: the client reconnects by itself.
    let server = replica_on(TcpListener::bind(addr).await.unwrap(), backend).await;
    let names: Vec<String> = remote
        .topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["before"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_to_the_next_replica() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&dir);
    // Two replicas in front of one store, as `strata meta` runs over etcd.
    let a = replica(backend.clone()).await;
    let b = replica(backend.clone()).await;
    let endpoints = format!("{},{}", a.uri(), b.uri());
    let remote = RemoteMetadata::connect_with(&endpoints, quick())
        .await
        .unwrap();
    remote.create_topic("t", 1, BTreeMap::new()).await.unwrap();

    a.stop().await;
    // Refused connections mean the request was never sent, so even a call
    // that must not be applied twice moves on.
    let t = remote.create_topic("u", 2, BTreeMap::new()).await.unwrap();
    assert_eq!(t.partitions, 2);
    let mut names: Vec<String> = remote
        .topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["t", "u"]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_endpoint_does_not_stop_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&dir);
    let b = replica(backend.clone()).await;
    let endpoints = format!("127.0.0.1:{}, {}", dead_addr().await.port(), b.uri());
    let remote = RemoteMetadata::connect_with(&endpoints, quick())
        .await
        .unwrap();
    assert_eq!(remote.cluster_id(), backend.cluster_id());
    assert!(remote.allocate_producer_id().await.is_ok());
    b.stop().await;

    let e = RemoteMetadata::connect_with(&format!("http://{}", dead_addr().await), quick())
        .await
        .err()
        .expect("nothing to connect to");
    assert!(e.is_retriable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_costs_one_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend(&dir);
    let (stalled, hold) = stalled_addr().await;
    let b = replica(backend.clone()).await;

    // Connecting asks for the cluster id, which is safe to ask twice.
    let both = format!("http://{stalled},{}", b.uri());
    let options = RemoteOptions {
        call_timeout: Duration::from_secs(2),
        ..quick()
    };
    let started = tokio::time::Instant::now();
    let remote = RemoteMetadata::connect_with(&both, options).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    // Later calls start at the replica that answered, not the stalled one.
    let started = tokio::time::Instant::now();
    remote.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1500));

    let e = RemoteMetadata::connect_with(&format!("http://{stalled}"), quick())
        .await
        .err()
        .expect("no answer");
    assert!(e.is_retriable(), "{e}");
    b.stop().await;
    hold.abort();
}
