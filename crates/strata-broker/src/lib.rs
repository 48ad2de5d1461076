//! The Kafka listener: accepts connections, frames and decodes requests with
//! the kafka-protocol crate, and answers each API from its own module under
//! [`api`]. Log and metadata work is delegated to strata-log / strata-meta.

pub mod api;
mod codes;
mod conn;
pub mod group;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use strata_log::LogManager;
use strata_meta::Metadata;

pub use server::serve;

/// Listener-level settings, named after Kafka's broker configs.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// Host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// `socket.request.max.bytes`: larger frames close the connection.
    pub max_request_bytes: usize,
    pub max_connections: usize,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions` for auto-created topics.
    pub default_partitions: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for
    /// more members before its first rebalance.
    pub group_initial_rebalance_delay_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            max_request_bytes: 104_857_600,
            max_connections: 10_000,
            auto_create_topics: true,
            default_partitions: 1,
            group_initial_rebalance_delay_ms: 3_000,
        }
    }
}

/// Everything a connection needs to answer requests.
pub struct Broker {
    pub config: BrokerConfig,
    pub log: LogManager,
    pub meta: Arc<dyn Metadata>,
    pub groups: Arc<group::Coordinator>,
}

impl Broker {
    pub fn new(config: BrokerConfig, log: LogManager) -> Arc<Self> {
        let meta = log.meta().clone();
        let groups = Arc::new(group::Coordinator::new(
            meta.clone(),
            Arc::new(strata_common::SystemClock),
            config.group_initial_rebalance_delay_ms,
        ));
        Arc::new(Self {
            config,
            log,
            meta,
            groups,
        })
    }

    /// Consumer lag per group and partition: the log end offset (high
    /// watermark) minus the committed offset, for metrics and tools.
    pub async fn consumer_lag(&self) -> Vec<group::PartitionLag> {
        let Ok(committed) = self.groups.committed().await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (group, tp, offset) in committed {
            let end = match self.log.partition(&tp).await {
                Some(p) => p.high_watermark(),
                None => match self.meta.manifest(&tp).await {
                    Ok(m) => m.end_offset,
                    Err(_) => continue,
                },
            };
            out.push(group::PartitionLag {
                group,
                tp,
                committed: offset,
                log_end: end,
                lag: (end - offset).max(0),
            });
        }
        out
    }

    pub fn advertised(&self) -> (String, i32) {
        (
            self.config.advertised_host.clone(),
            self.config.advertised_port,
        )
    }
}

/// Parses `host:port` for `--advertised-listener`.
pub fn split_host_port(s: &str) -> Option<(String, i32)> {
    let s = s.rsplit("://").next().unwrap_or(s);
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some((a.ip().to_string(), a.port() as i32));
    }
    let (h, p) = s.rsplit_once(':')?;
    Some((h.to_string(), p.parse().ok()?))
}
