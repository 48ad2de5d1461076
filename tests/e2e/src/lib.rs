//! Harness for end-to-end tests that run a whole broker in this process
//! (so a test can inject object store faults underneath it) and talk to it
//! through librdkafka over a real socket.

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
        let log = LogManager::open(config, store.clone(), meta, Arc::new(SystemClock))
            .await
            .expect("open log");
        let loops = log.start();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = Broker::new(
            BrokerConfig {
                advertised_host: addr.ip().to_string(),
                advertised_port: addr.port() as i32,
                ..BrokerConfig::default()
            },
            log.clone(),
        );
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(strata_broker::serve(listener, broker, shutdown.clone()));
        TestBroker {
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
