//! `strata meta`: the metadata service as its own process, in front of the
//! embedded file backend (one replica) or etcd (several replicas, one of
//! which runs the assignment loop at a time).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_common::SystemClock;
use strata_meta::{EmbeddedMetadata, Metadata};
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct MetaArgs {
    /// Address the gRPC service listens on.
    #[arg(long, env = "STRATA_META_LISTEN", default_value = "127.0.0.1:9500")]
    listen: String,
    /// `embedded` (a local file under --data-dir) or
    /// `etcd://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, env = "STRATA_META_BACKEND", default_value = "embedded")]
    backend: String,
    /// Where the embedded backend keeps its file.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "strata-meta-data")]
    data_dir: PathBuf,
    /// Key prefix in etcd, so several clusters can share one.
    #[arg(long, env = "STRATA_ETCD_PREFIX", default_value = "/strata")]
    etcd_prefix: String,
    /// A broker whose heartbeats stop for this long loses its partitions
    /// (Kafka's broker.session.timeout.ms).
    #[arg(
        long,
        env = "STRATA_BROKER_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    broker_session_timeout_ms: i64,
}

/// Opens the backend a `--backend` value names.
pub async fn open_backend(
    backend: &str,
    data_dir: &std::path::Path,
    etcd_prefix: &str,
    session_timeout_ms: i64,
) -> anyhow::Result<Arc<dyn Metadata>> {
    if backend == "embedded" {
        let m = EmbeddedMetadata::open(data_dir)
            .with_context(|| format!("opening embedded metadata in {}", data_dir.display()))?
            .with_sessions(session_timeout_ms, Arc::new(SystemClock));
        return Ok(Arc::new(m));
    }
    if let Some(list) = backend.strip_prefix("etcd://") {
        let endpoints: Vec<String> = list
            .split(',')
            .filter(|e| !e.is_empty())
            .map(|e| format!("http://{e}"))
            .collect();
        let m =
            strata_meta::etcd::EtcdMetadata::connect(&endpoints, etcd_prefix, session_timeout_ms)
                .await
                .with_context(|| format!("connecting to etcd at {list}"))?;
        return Ok(Arc::new(m));
    }
    anyhow::bail!("unknown metadata backend {backend:?}: use `embedded` or `etcd://host:port,...`")
}

/// Serves `backend` on `listener` and runs the assignment loop until
/// `stop`.
pub fn spawn_service(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn Metadata>,
    session_timeout_ms: i64,
    stop: CancellationToken,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let replica = format!(
        "{}-{}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        uuid::Uuid::new_v4().simple()
    );
    tasks.spawn(strata_meta::assign::run_assigner(
        backend.clone(),
        replica,
        Arc::new(SystemClock),
        session_timeout_ms,
        Duration::from_millis(200),
        stop.clone(),
    ));
    tasks.spawn(async move {
        if let Err(e) = strata_meta::grpc::serve_meta(listener, backend, stop).await {
            tracing::error!(error = %e, "metadata service stopped");
        }
    });
    tasks
}

pub async fn run(args: MetaArgs) -> anyhow::Result<()> {
    let backend = open_backend(
        &args.backend,
        &args.data_dir,
        &args.etcd_prefix,
        args.broker_session_timeout_ms,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let stop = CancellationToken::new();
    tracing::info!(listen = %args.listen, backend = %args.backend, "metadata service is serving");
    let mut tasks = spawn_service(
        listener,
        backend,
        args.broker_session_timeout_ms,
        stop.clone(),
    );
    crate::serve::wait_for_signal().await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}
