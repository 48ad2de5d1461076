//! `strata serve`: settings (defaults < config file < `STRATA_*` env <
//! flags) and the wiring of store, metadata, log and listener.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use strata_broker::{Broker, BrokerConfig};
use strata_common::SystemClock;
use strata_log::{LogConfig, LogManager};
use strata_store::{CountingStore, PooledReads, RetryPolicy, RetryingStore, StoreMetrics};
use tokio_util::sync::CancellationToken;

/// Capacity of ranged-read buffers kept for reuse between GETs: more than the segment
/// reader's 48 MiB of read-ahead, so the row groups a replay has in flight, and the
/// one being decoded, land in buffers already mapped (64 MiB measured in benches/).
const READ_BUFFER_POOL_BYTES: usize = 64 << 20;

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (names with underscores).
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on for Kafka clients [default: 127.0.0.1:9092].
    #[arg(long, env = "STRATA_LISTEN")]
    listen: Option<String>,
    /// host:port clients are told to connect to [default: the listen address].
    #[arg(long, env = "STRATA_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// Folder for meta/, cache/ and (without a bucket) objects/ [default: ./strata-data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Object store: empty for DATA_DIR/objects, file:///path, or
    /// s3://bucket/prefix (AWS_* environment variables, AWS_ENDPOINT_URL for MinIO).
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    object_store: Option<String>,
    /// Memory for cached segment data, in bytes [default: 268435456].
    #[arg(long, env = "STRATA_CACHE_MEMORY_BYTES")]
    cache_memory_bytes: Option<usize>,
    /// Local disk for cached segment data (DATA_DIR/cache), in bytes [default: 1073741824; 0 disables].
    #[arg(long, env = "STRATA_CACHE_DISK_BYTES")]
    cache_disk_bytes: Option<usize>,
    /// Write a WAL object at least this often, in ms [default: 5].
    #[arg(long, env = "STRATA_WAL_FLUSH_MS")]
    wal_flush_ms: Option<u64>,
    /// Write a WAL object early once this many bytes are pending [default: 4194304].
    #[arg(long, env = "STRATA_WAL_FLUSH_BYTES")]
    wal_flush_bytes: Option<usize>,
    /// Unsealed data held in memory across partitions before the largest
    /// tails are sealed early, in bytes [default: 536870912].
    #[arg(long, env = "STRATA_MAX_UNSEALED_BYTES")]
    max_unsealed_bytes: Option<usize>,
    /// This broker's id (Kafka's node.id) [default: 1].
    #[arg(long, env = "STRATA_NODE_ID")]
    node_id: Option<i32>,
    /// Kafka's auto.create.topics.enable [default: true].
    #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Kafka's num.partitions for auto-created topics [default: 1].
    #[arg(long, env = "STRATA_NUM_PARTITIONS")]
    num_partitions: Option<i32>,
    /// How often retention runs, in ms (Kafka's log.retention.check.interval.ms) [default: 5000].
    #[arg(long, env = "STRATA_RETENTION_CHECK_MS")]
    retention_check_ms: Option<u64>,
    /// How long a new consumer group waits for more members before its
    /// first rebalance, in ms (Kafka's group.initial.rebalance.delay.ms) [default: 3000].
    #[arg(long, env = "STRATA_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    group_initial_rebalance_delay_ms: Option<i64>,
    /// The metadata service: `http://HOST:PORT[,http://HOST:PORT...]` (the
    /// `strata meta` replicas). Without it, the service runs in this
    /// process over DATA_DIR/meta, for a single node.
    #[arg(long, env = "STRATA_META")]
    meta: Option<String>,
    /// For the in-process metadata service: how long a broker's session
    /// lasts without heartbeats, in ms (Kafka's broker.session.timeout.ms) [default: 6000].
    #[arg(long, env = "STRATA_BROKER_SESSION_TIMEOUT_MS")]
    broker_session_timeout_ms: Option<i64>,
}

/// The same settings as read from a config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    advertised_listener: Option<String>,
    data_dir: Option<PathBuf>,
    object_store: Option<String>,
    cache_memory_bytes: Option<usize>,
    cache_disk_bytes: Option<usize>,
    wal_flush_ms: Option<u64>,
    wal_flush_bytes: Option<usize>,
    max_unsealed_bytes: Option<usize>,
    node_id: Option<i32>,
    auto_create_topics: Option<bool>,
    num_partitions: Option<i32>,
    retention_check_ms: Option<u64>,
    group_initial_rebalance_delay_ms: Option<i64>,
    meta: Option<String>,
    broker_session_timeout_ms: Option<i64>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file: FileSettings = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => FileSettings::default(),
    };
    macro_rules! pick {
        ($f:ident, $d:expr) => {
            args.$f.clone().or(file.$f.clone()).unwrap_or_else(|| $d)
        };
    }
    let listen: String = pick!(listen, "127.0.0.1:9092".to_string());
    let data_dir: PathBuf = pick!(data_dir, PathBuf::from("strata-data"));
    let object_store: String = pick!(object_store, String::new());
    let node_id = pick!(node_id, 1);
    let log_config = LogConfig {
        broker_id: node_id,
        wal_flush_ms: pick!(wal_flush_ms, 5),
        wal_flush_bytes: pick!(wal_flush_bytes, 4 << 20),
        cache_memory_bytes: pick!(cache_memory_bytes, 256 << 20),
        cache_dir: Some(data_dir.join("cache")),
        cache_disk_bytes: pick!(cache_disk_bytes, 1 << 30),
        retention_check_ms: pick!(retention_check_ms, 5_000),
        max_unsealed_bytes: pick!(max_unsealed_bytes, 512 << 20),
        ..LogConfig::default()
    };

    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let objects_dir = data_dir.join("objects");
    let backend = strata_store::open_store(&object_store, &objects_dir)
        .with_context(|| format!("opening object store {object_store:?}"))?;
    let metrics = StoreMetrics::new();
    let counted: Arc<dyn strata_store::ObjectStore> =
        Arc::new(CountingStore::new(backend, metrics));
    let store: Arc<dyn strata_store::ObjectStore> = Arc::new(RetryingStore::new(
        Arc::new(PooledReads::new(counted, READ_BUFFER_POOL_BYTES)),
        RetryPolicy::default(),
    ));
    let session_ms = pick!(broker_session_timeout_ms, 6_000);
    // Stopped only after the final flush, which still commits through it.
    let meta_stop = CancellationToken::new();
    let mut meta_tasks = tokio::task::JoinSet::new();
    let meta_url = match pick!(meta, String::new()) {
        url if !url.is_empty() => url,
        _ => {
            // Single node: the same gRPC service a cluster runs, bound to
            // loopback inside this process, so both share one code path.
            let backend =
                crate::meta::open_backend("embedded", &data_dir.join("meta"), "", session_ms)
                    .await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            meta_tasks =
                crate::meta::spawn_service(listener, backend, session_ms, meta_stop.clone());
            format!("http://{addr}")
        }
    };
    let meta: Arc<dyn strata_meta::Metadata> = Arc::new(
        strata_meta::grpc::RemoteMetadata::connect(&meta_url)
            .await
            .with_context(|| format!("connecting to the metadata service at {meta_url}"))?,
    );
    let log = LogManager::open(log_config, store, meta, Arc::new(SystemClock))
        .await
        .context("recovering partitions")?;
    let mut loops = log.start();

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let bound = listener.local_addr()?;
    let advertised = pick!(advertised_listener, bound.to_string());
    let (host, port) = strata_broker::split_host_port(&advertised)
        .with_context(|| format!("advertised listener {advertised:?} is not host:port"))?;
    let broker_config = BrokerConfig {
        node_id,
        advertised_host: host,
        advertised_port: port,
        auto_create_topics: pick!(auto_create_topics, true),
        default_partitions: pick!(num_partitions, 1),
        group_initial_rebalance_delay_ms: pick!(group_initial_rebalance_delay_ms, 3_000),
        ..BrokerConfig::default()
    };
    let broker = Broker::new(broker_config, log.clone());
    let shutdown = CancellationToken::new();
    tracing::info!(%bound, advertised, store = %if object_store.is_empty() { objects_dir.display().to_string() } else { object_store.clone() }, data_dir = %data_dir.display(), "strata is serving");
    let server = tokio::spawn(strata_broker::serve(listener, broker, shutdown.clone()));

    wait_for_signal().await;
    tracing::info!("shutting down: flushing pending writes");
    shutdown.cancel();
    let _ = server.await;
    log.shutdown().await;
    loops.abort_all();
    meta_stop.cancel();
    while meta_tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
