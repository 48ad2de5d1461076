//! Cluster membership: keeps this broker registered with the metadata
//! service and serving exactly the partitions the service assigned it —
//! taking a partition at its new leader epoch, releasing one that moved —
//! and holds the latest cluster view that Metadata and FindCoordinator
//! answers are built from.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use strata_common::TopicPartition;
use strata_meta::{BrokerInfo, ClusterView, MetaError, TopicMeta};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::Broker;

pub struct Membership {
    view: RwLock<Arc<ClusterView>>,
    nudge: Notify,
    /// Counts completed syncs, so a caller can wait for the next one.
    synced: watch::Sender<u64>,
}

impl Default for Membership {
    fn default() -> Self {
        Self {
            view: RwLock::new(Arc::new(ClusterView::default())),
            nudge: Notify::new(),
            synced: watch::channel(0).0,
        }
    }
}

impl Membership {
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().unwrap().clone()
    }

    /// A partition's leader and epoch, when a live broker leads it.
    pub fn leader(&self, tp: &TopicPartition) -> Option<(i32, i32)> {
        let v = self.view();
        let p = v.leaders.iter().find(|p| p.tp == *tp)?;
        v.brokers
            .iter()
            .any(|b| b.id == p.leader)
            .then_some((p.leader, p.epoch))
    }

    pub fn broker(&self, id: i32) -> Option<BrokerInfo> {
        self.view().brokers.iter().find(|b| b.id == id).cloned()
    }

    /// Syncs now and waits (up to `timeout`) until every partition of
    /// `topic` has a live leader, so a topic is usable when CreateTopics
    /// answers.
    pub async fn await_leaders(&self, topic: &TopicMeta, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.synced.subscribe();
        loop {
            let ready = (0..topic.partitions).all(|p| {
                self.leader(&TopicPartition::new(topic.name.as_str(), p))
                    .is_some()
            });
            if ready {
                return;
            }
            self.nudge.notify_one();
            rx.mark_unchanged();
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                tracing::warn!(topic = %topic.name, "partitions have no leader yet");
                return;
            }
        }
    }
}

/// Heartbeats and reconciles until `stop`, as two loops: opening a
/// partition can take seconds (its WAL tail is read back), and the session
/// must not lapse meanwhile.
pub async fn run(broker: Arc<Broker>, stop: CancellationToken) {
    tokio::join!(
        heartbeat_loop(broker.clone(), stop.clone()),
        sync_loop(broker, stop)
    );
}

async fn heartbeat_loop(broker: Arc<Broker>, stop: CancellationToken) {
    let (host, port) = broker.advertised();
    let me = BrokerInfo {
        id: broker.config.node_id,
        host,
        port,
    };
    let every = Duration::from_millis(broker.config.heartbeat_interval_ms);
    let session = Duration::from_millis(broker.config.session_timeout_ms);
    let mut registered = false;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        match heartbeat(&broker, &me, &mut registered).await {
            Ok(()) => last_ok = tokio::time::Instant::now(),
            Err(e) => {
                tracing::warn!(error = %e, "metadata service heartbeat failed");
                // Past its session the service has given our partitions to
                // others; stop serving them rather than answer from a stale
                // view (their commits would be fenced anyway).
                if last_ok.elapsed() > session {
                    release_all(&broker).await;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn heartbeat(
    broker: &Arc<Broker>,
    me: &BrokerInfo,
    registered: &mut bool,
) -> Result<(), MetaError> {
    if !*registered {
        broker.meta.register_broker(me.clone()).await?;
        *registered = true;
        broker.membership.nudge.notify_one();
        return Ok(());
    }
    match broker.meta.heartbeat_broker(me.id).await {
        Err(MetaError::UnknownBroker(_)) => {
            tracing::info!(broker = me.id, "session expired; registering again");
            *registered = false;
            broker.meta.register_broker(me.clone()).await?;
            *registered = true;
            broker.membership.nudge.notify_one();
            Ok(())
        }
        other => other,
    }
}

async fn sync_loop(broker: Arc<Broker>, stop: CancellationToken) {
    let every = Duration::from_millis(broker.config.heartbeat_interval_ms);
    loop {
        if let Err(e) = sync_once(&broker).await {
            tracing::warn!(error = %e, "reading the cluster view failed");
        }
        broker.membership.synced.send_modify(|n| *n += 1);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = broker.membership.nudge.notified() => {}
        }
    }
}

async fn sync_once(broker: &Arc<Broker>) -> Result<(), MetaError> {
    let view = Arc::new(broker.meta.cluster().await?);
    // Published before reconciling, so Metadata answers name the new
    // leaders at once (a partition still opening here shows no leader).
    *broker.membership.view.write().unwrap() = view.clone();
    broker.groups.retain(|g| broker.is_coordinator(g));
    reconcile(broker, &view).await;
    // Config changes may have been made through another broker.
    for t in broker.meta.topics().await? {
        broker.log.refresh_config(&t).await;
    }
    Ok(())
}

/// Releases partitions that moved away, takes the ones assigned here.
async fn reconcile(broker: &Arc<Broker>, view: &ClusterView) {
    let me = broker.config.node_id;
    let mine: BTreeMap<&TopicPartition, i32> = view
        .leaders
        .iter()
        .filter(|p| p.leader == me)
        .map(|p| (&p.tp, p.epoch))
        .collect();
    // Partitions held at the epoch assigned to us stay; the rest go.
    let mut kept = HashSet::new();
    for (tp, epoch) in broker.log.held().await {
        if mine.get(&tp) == Some(&epoch) {
            kept.insert(tp);
        } else {
            tracing::info!(%tp, epoch, "partition moved away; releasing");
            broker.log.release_partition(&tp).await;
        }
    }
    let mut topics: HashMap<String, Option<TopicMeta>> = HashMap::new();
    let mut takes = Vec::new();
    for (tp, epoch) in mine {
        if kept.contains(tp) {
            continue;
        }
        let topic = match topics.get(&*tp.topic) {
            Some(t) => t.clone(),
            None => {
                let t = broker.meta.topic(&tp.topic).await.ok().flatten();
                topics.insert(tp.topic.to_string(), t.clone());
                t
            }
        };
        if let Some(topic) = topic {
            takes.push((topic, tp.clone(), epoch));
        }
    }
    // Several at once: each waits mostly on reads of its WAL tail.
    futures::stream::iter(takes)
        .for_each_concurrent(8, |(topic, tp, epoch)| async move {
            match broker.log.take_partition(&topic, tp.partition, epoch).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!(%tp, epoch, "assignment already superseded"),
                Err(e) => tracing::warn!(%tp, epoch, error = %e, "taking partition failed"),
            }
        })
        .await;
}

async fn release_all(broker: &Arc<Broker>) {
    for (tp, _) in broker.log.held().await {
        tracing::warn!(%tp, "no contact with the metadata service past the session timeout; releasing");
        broker.log.release_partition(&tp).await;
    }
}
