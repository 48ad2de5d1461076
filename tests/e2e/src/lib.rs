//! Harness for end-to-end tests that run a whole broker in this process
//! (so a test can inject object store faults underneath it) and talk to it
//! through librdkafka over a real socket.

pub mod proxy;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::TopicPartitionList;
use strata_broker::{Broker, BrokerConfig};
use strata_common::SystemClock;
use strata_log::{LogConfig, LogManager};
use strata_meta::EmbeddedMetadata;
use strata_store::{FaultHandle, FaultyStore, ObjectStore, RetryPolicy, RetryingStore};
use tokio_util::sync::CancellationToken;

/// A broker running inside the test process.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub faults: FaultHandle,
    pub store: Arc<dyn ObjectStore>,
    pub log: LogManager,
    pub broker: Arc<Broker>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    loops: tokio::task::JoinSet<()>,
}

impl TestBroker {
    /// Starts a broker whose objects live in `dir/objects` and metadata in
    /// `dir/meta`, with a fault injector just above the local store.
    pub async fn start(dir: &Path) -> TestBroker {
        Self::start_with(dir, LogConfig::default()).await
    }

    pub async fn start_with(dir: &Path, config: LogConfig) -> TestBroker {
        Self::start_advertising(dir, config, None).await
    }

    /// Starts a broker that gives clients `advertise` as its address (a
    /// proxy in front of it) instead of the one it listens on.
    pub async fn start_advertising(
        dir: &Path,
        config: LogConfig,
        advertise: Option<SocketAddr>,
    ) -> TestBroker {
        let backend = strata_store::open_store("", &dir.join("objects")).expect("local store");
        let (faulty, faults) = FaultyStore::new(backend);
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(5),
        };
        let store: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(Arc::new(faulty), policy));
        let meta = Arc::new(EmbeddedMetadata::open(&dir.join("meta")).expect("metadata"));
        let shutdown = CancellationToken::new();
        // The in-process metadata service assigns partitions as `strata
        // serve` does; one broker needs no grace period.
        tokio::spawn(strata_meta::assign::run_assigner(
            meta.clone(),
            "test".into(),
            Arc::new(SystemClock),
            0,
            Duration::from_millis(50),
            shutdown.clone(),
        ));
        let log = LogManager::open(config, store.clone(), meta, Arc::new(SystemClock))
            .await
            .expect("open log");
        let loops = log.start();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let advertised = advertise.unwrap_or(addr);
        let broker = Broker::new(
            BrokerConfig {
                advertised_host: advertised.ip().to_string(),
                advertised_port: advertised.port() as i32,
                heartbeat_interval_ms: 200,
                ..BrokerConfig::default()
            },
            log.clone(),
        );
        let server = tokio::spawn(strata_broker::serve(
            listener,
            broker.clone(),
            shutdown.clone(),
        ));
        TestBroker {
            broker,
            addr,
            faults,
            store,
            log,
            shutdown,
            server,
            loops,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Clean stop: stops listening, flushes what is pending.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = (&mut self.server).await;
        self.log.shutdown().await;
        self.loops.abort_all();
    }

    /// Stops without the final flush, as a crash would (memory is lost).
    pub async fn crash(mut self) {
        self.shutdown.cancel();
        self.server.abort();
        let _ = (&mut self.server).await;
        self.loops.abort_all();
        while self.loops.join_next().await.is_some() {}
    }
}

/// A record as a consumer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// (is log append time, milliseconds)
    pub timestamp: (bool, i64),
}

/// Reads `count` records of `topic`/`partition` from `from`, by assignment
/// (no consumer group), within `timeout`.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    from: i64,
    count: usize,
    timeout: Duration,
) -> Vec<Seen> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-assign-only")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(from))
        .unwrap();
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Seen {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| k.to_vec()),
                value: m.payload().map(|v| v.to_vec()),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_string(), x.value.map(|v| v.to_vec())))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: match m.timestamp() {
                    rdkafka::Timestamp::LogAppendTime(t) => (true, t),
                    rdkafka::Timestamp::CreateTime(t) => (false, t),
                    rdkafka::Timestamp::NotAvailable => (false, -1),
                },
            }),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}
