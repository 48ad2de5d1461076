use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::grpc::convert::to_status;
use crate::grpc::serve_meta;
use crate::EmbeddedMetadata;

#[test]
fn endpoint_lists_are_split_and_default_to_http() {
    assert_eq!(
        parse_endpoints(" http://a:1, b:2 ,,").unwrap(),
        vec!["http://a:1".to_string(), "http://b:2".to_string()]
    );
    assert!(parse_endpoints(" , ").is_err());
}

#[test]
fn only_statuses_without_a_typed_error_count_as_transport_failures() {
    assert!(matches!(
        classify(Status::unavailable("connection reset")),
        Failure::Ambiguous(_)
    ));
    assert!(matches!(
        classify(Status::invalid_argument("partition missing")),
        Failure::Answered(MetaError::Storage(_))
    ));
    // A backend's Storage error is Unavailable too, but it was answered.
    assert!(matches!(
        classify(to_status(&MetaError::Storage("disk full".into()))),
        Failure::Answered(MetaError::Storage(_))
    ));
    assert!(matches!(
        classify(to_status(&MetaError::UnknownBroker(3))),
        Failure::Answered(MetaError::UnknownBroker(3))
    ));
}

/// A replica that accepts connections and never answers, like one stopped
/// with SIGSTOP: a call sent to it may or may not have been applied.
async fn stalled() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (uri, hold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_ambiguous_failure_only_safe_calls_move_on() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Metadata> = Arc::new(EmbeddedMetadata::open(dir.path()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_meta(listener, backend.clone(), shutdown.clone()));
    let (stuck, hold) = stalled().await;

    let options = RemoteOptions {
        call_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    };
    // Built unconnected so the stalled replica stays the preferred one.
    let remote = RemoteMetadata::unconnected(&format!("{stuck},{good}"), &options).unwrap();

    let e = remote
        .create_topic("once", 1, BTreeMap::new())
        .await
        .unwrap_err();
    assert!(e.is_retriable(), "{e}");
    assert!(
        backend.topic("once").await.unwrap().is_none(),
        "an unsafe call is not re-sent elsewhere after a timeout"
    );
    assert_eq!(
        remote.preferred.load(Ordering::Relaxed),
        1,
        "the next call starts elsewhere"
    );

    remote.preferred.store(0, Ordering::Relaxed);
    assert!(
        remote.topics().await.unwrap().is_empty(),
        "a safe call moves on"
    );
    assert_eq!(remote.preferred.load(Ordering::Relaxed), 1);
    remote
        .create_topic("once", 1, BTreeMap::new())
        .await
        .expect("the caller's retry lands on the live replica");

    shutdown.cancel();
    server.await.unwrap().unwrap();
    hold.abort();
}
