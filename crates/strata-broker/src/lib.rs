//! The Kafka listener: accepts connections, frames and decodes requests with
//! the kafka-protocol crate, and answers each API from its own module under
//! [`api`]. Log and metadata work is delegated to strata-log / strata-meta.

pub mod api;
mod codes;
mod conn;
mod frame;
pub mod group;
pub mod membership;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use strata_log::LogManager;
use strata_meta::Metadata;

pub use server::serve;

/// How long CreateTopics (and auto-creation) waits for the new partitions
/// to get leaders before answering.
pub const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// How often the broker heartbeats to the metadata service and syncs
    /// the partitions it leads (Kafka's broker.heartbeat.interval.ms).
    pub heartbeat_interval_ms: u64,
    /// Without a successful heartbeat for this long, the broker stops
    /// serving its partitions: the service has moved them.
    pub session_timeout_ms: u64,
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
            heartbeat_interval_ms: 1_000,
            session_timeout_ms: 6_000,
        }
    }
}

/// Everything a connection needs to answer requests.
pub struct Broker {
    pub config: BrokerConfig,
    pub log: LogManager,
    pub meta: Arc<dyn Metadata>,
    pub groups: Arc<group::Coordinator>,
    pub membership: membership::Membership,
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
            membership: membership::Membership::default(),
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

    /// Live brokers as the last sync saw them; before the first sync, this
    /// one alone.
    pub fn live_brokers(&self) -> Vec<strata_meta::BrokerInfo> {
        let view = self.membership.view();
        if view.brokers.is_empty() {
            let (host, port) = self.advertised();
            return vec![strata_meta::BrokerInfo {
                id: self.config.node_id,
                host,
                port,
            }];
        }
        view.brokers.clone()
    }

    /// A partition's live leader and epoch. A partition open here answers
    /// for itself even before the view catches up.
    pub async fn leader_of(&self, tp: &strata_common::TopicPartition) -> Option<(i32, i32)> {
        if let Some(p) = self.log.partition(tp).await {
            return Some((self.config.node_id, p.epoch()));
        }
        self.membership
            .leader(tp)
            .filter(|(id, _)| *id != self.config.node_id)
    }

    /// A partition this broker was just given is still opening (its WAL tail
    /// is being read back, right after a restart or a takeover): wait for it,
    /// briefly, so clients see this broker as its leader rather than none, an
    /// answer some client calls (librdkafka's watermark query) do not retry.
    pub async fn await_own_open(&self, tp: &strata_common::TopicPartition) {
        let assigned_here = || {
            self.membership
                .leader(tp)
                .is_some_and(|(id, _)| id == self.config.node_id)
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        while assigned_here()
            && self.log.partition(tp).await.is_none()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The broker that coordinates `group`: a stable hash of the group id
    /// over the live brokers sorted by id, so every broker agrees without
    /// asking, and a group moves only when the set of brokers changes.
    pub fn coordinator_for(&self, group: &str) -> strata_meta::BrokerInfo {
        let brokers = self.live_brokers();
        // FNV-1a: stable across processes and releases, unlike std's hasher.
        let hash = group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        brokers[(hash % brokers.len() as u64) as usize].clone()
    }

    pub fn is_coordinator(&self, group: &str) -> bool {
        self.coordinator_for(group).id == self.config.node_id
    }

    /// The Kafka error for a failed log operation on `tp`: a partition that
    /// exists but is led elsewhere is NOT_LEADER_OR_FOLLOWER, so clients
    /// refresh metadata and follow it.
    pub fn log_error_code(
        &self,
        tp: &strata_common::TopicPartition,
        e: &strata_log::LogError,
    ) -> i16 {
        match e {
            strata_log::LogError::UnknownPartition(_)
                if self.membership.view().leaders.iter().any(|p| p.tp == *tp) =>
            {
                codes::NOT_LEADER_OR_FOLLOWER
            }
            _ => codes::log_error(e),
        }
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
