//! The group coordinator (Kafka's classic protocol). Membership and
//! rebalances live in memory, one [`state::Group`] per group, driven by
//! requests and a clock tick; committed offsets go through the metadata
//! service, so they survive restarts, deleted caches and (with a shared
//! metadata service) the coordinator moving to another broker. Members of a
//! group whose coordinator restarted rejoin, as they do after a Kafka
//! coordinator failover.

pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_common::{Clock, TopicPartition};
use strata_meta::{CommittedOffset, Metadata};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::codes;
use state::{Group, GroupState, JoinOutcome, JoinRequest, SyncOutcome};

/// Kafka's `offset.metadata.max.bytes`.
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

type Offsets = BTreeMap<TopicPartition, CommittedOffset>;

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug)]
pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Clone, Debug)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// One group's lag on one partition: log end minus committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub group: String,
    pub tp: TopicPartition,
    pub committed: i64,
    pub log_end: i64,
    pub lag: i64,
}

pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    /// Committed offsets per group, loaded from the metadata service the
    /// first time a group is touched.
    offsets: Mutex<HashMap<String, Offsets>>,
    meta: Arc<dyn Metadata>,
    clock: Arc<dyn Clock>,
    /// `group.initial.rebalance.delay.ms`.
    initial_delay_ms: i64,
}

impl Coordinator {
    pub fn new(meta: Arc<dyn Metadata>, clock: Arc<dyn Clock>, initial_delay_ms: i64) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(HashMap::new()),
            meta,
            clock,
            initial_delay_ms,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn with_group<T>(&self, id: &str, create: bool, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        let mut groups = self.groups.lock().unwrap();
        if create && !groups.contains_key(id) {
            groups.insert(id.to_string(), Group::new(id, self.initial_delay_ms));
        }
        groups.get_mut(id).map(f)
    }

    pub fn join(&self, group: &str, req: JoinRequest) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let now = self.now_ms();
        self.with_group(group, true, |g| g.join(req, now, tx));
        rx
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> oneshot::Receiver<SyncOutcome> {
        let (tx, rx) = oneshot::channel();
        let now = self.now_ms();
        let found = self.with_group(group, false, |g| {
            g.sync(
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol_name,
                assignments,
                now,
                tx,
            )
        });
        if found.is_none() {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(SyncOutcome {
                error: codes::UNKNOWN_MEMBER_ID,
                ..Default::default()
            });
            return rx;
        }
        rx
    }

    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let now = self.now_ms();
        self.with_group(group, false, |g| {
            g.heartbeat(member_id, instance_id, generation, now)
        })
        .unwrap_or(codes::UNKNOWN_MEMBER_ID)
    }

    /// Removes members (member id and/or static instance id); one error
    /// code per member.
    pub fn leave(&self, group: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let now = self.now_ms();
        self.with_group(group, false, |g| {
            members
                .iter()
                .map(|(id, inst)| g.leave(id, inst.as_deref(), now))
                .collect()
        })
        .unwrap_or_else(|| vec![codes::UNKNOWN_MEMBER_ID; members.len()])
    }

    async fn load_offsets(&self, group: &str) -> Result<(), i16> {
        if self.offsets.lock().unwrap().contains_key(group) {
            return Ok(());
        }
        let loaded = self.meta.fetch_offsets(group).await.map_err(|e| {
            tracing::warn!(group, error = %e, "loading committed offsets failed");
            codes::COORDINATOR_NOT_AVAILABLE
        })?;
        self.offsets
            .lock()
            .unwrap()
            .entry(group.to_string())
            .or_insert_with(|| loaded.into_iter().collect());
        Ok(())
    }

    /// Checks that the member may commit; `Err` is the code for every
    /// partition of the request.
    pub fn check_commit(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        let now = self.now_ms();
        match self.with_group(group, false, |g| {
            g.check_commit(member_id, instance_id, generation, now)
        }) {
            Some(r) => r,
            None if generation < 0 && member_id.is_empty() => Ok(()),
            None => Err(codes::UNKNOWN_MEMBER_ID),
        }
    }

    /// Makes offsets durable, then visible to OffsetFetch.
    pub async fn commit(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<(), i16> {
        self.load_offsets(group).await?;
        self.meta
            .commit_offsets(group, offsets.clone())
            .await
            .map_err(|e| {
                tracing::warn!(group, error = %e, "committing offsets failed");
                codes::COORDINATOR_NOT_AVAILABLE
            })?;
        let mut all = self.offsets.lock().unwrap();
        let g = all.entry(group.to_string()).or_default();
        for (tp, o) in offsets {
            g.insert(tp, o);
        }
        Ok(())
    }

    pub async fn fetch(&self, group: &str) -> Result<Offsets, i16> {
        self.load_offsets(group).await?;
        Ok(self
            .offsets
            .lock()
            .unwrap()
            .get(group)
            .cloned()
            .unwrap_or_default())
    }

    /// Every group with members or committed offsets: (id, protocol type, state).
    pub async fn list(&self) -> Result<Vec<(String, String, &'static str)>, i16> {
        let stored = self
            .meta
            .offset_groups()
            .await
            .map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)?;
        let mut out: BTreeMap<String, (String, &'static str)> = stored
            .into_iter()
            .map(|g| (g, ("consumer".to_string(), GroupState::Empty.name())))
            .collect();
        for g in self.groups.lock().unwrap().values() {
            if g.is_empty() && !out.contains_key(&g.id) {
                continue;
            }
            let ptype = g.protocol_type.clone().unwrap_or_else(|| "consumer".into());
            out.insert(g.id.clone(), (ptype, g.state.name()));
        }
        Ok(out.into_iter().map(|(k, (t, s))| (k, t, s)).collect())
    }

    /// `None` when the group has neither members nor committed offsets.
    pub async fn describe(&self, group: &str) -> Result<Option<GroupSummary>, i16> {
        let live = self.with_group(group, false, |g| {
            if g.members.is_empty() {
                return None;
            }
            let show = matches!(
                g.state,
                GroupState::Stable | GroupState::CompletingRebalance
            );
            Some(GroupSummary {
                state: g.state.name(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocol: if show {
                    g.protocol.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                members: g
                    .members
                    .values()
                    .map(|m| MemberSummary {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: m.metadata(g.protocol.as_deref()),
                        assignment: m.assignment.clone(),
                    })
                    .collect(),
            })
        });
        if let Some(Some(s)) = live {
            return Ok(Some(s));
        }
        let offsets = self.fetch(group).await?;
        if offsets.is_empty() {
            return Ok(None);
        }
        Ok(Some(GroupSummary {
            state: GroupState::Empty.name(),
            protocol_type: "consumer".into(),
            protocol: String::new(),
            members: Vec::new(),
        }))
    }

    /// DeleteGroups for one group: only a group nobody is in.
    pub async fn delete(&self, group: &str) -> i16 {
        let busy = self
            .with_group(group, false, |g| !g.is_empty())
            .unwrap_or(false);
        if busy {
            return codes::NON_EMPTY_GROUP;
        }
        match self.fetch(group).await {
            Err(code) => return code,
            Ok(o) if o.is_empty() && !self.groups.lock().unwrap().contains_key(group) => {
                return codes::GROUP_ID_NOT_FOUND
            }
            Ok(_) => {}
        }
        if let Err(e) = self.meta.delete_offsets(group, None).await {
            tracing::warn!(group, error = %e, "deleting group offsets failed");
            return codes::COORDINATOR_NOT_AVAILABLE;
        }
        self.offsets.lock().unwrap().remove(group);
        self.groups.lock().unwrap().remove(group);
        tracing::info!(group, "group deleted");
        codes::NONE
    }

    /// Topics the group's current members subscribe to, from their
    /// consumer-protocol metadata.
    pub fn subscribed_topics(&self, group: &str) -> Vec<String> {
        self.with_group(group, false, |g| {
            if g.protocol_type.as_deref() != Some("consumer") {
                return Vec::new();
            }
            g.members
                .values()
                .flat_map(|m| subscription_topics(&m.metadata(g.protocol.as_deref())))
                .collect()
        })
        .unwrap_or_default()
    }

    /// OffsetDelete: drops offsets of partitions whose topic no member
    /// subscribes to; the others get GROUP_SUBSCRIBED_TO_TOPIC.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<(TopicPartition, i16)>, i16> {
        let known = self.fetch(group).await?;
        if known.is_empty() && !self.groups.lock().unwrap().contains_key(group) {
            return Err(codes::GROUP_ID_NOT_FOUND);
        }
        let subscribed = self.subscribed_topics(group);
        let (busy, free): (Vec<_>, Vec<_>) = partitions
            .into_iter()
            .partition(|tp| subscribed.iter().any(|t| **t == *tp.topic));
        if !free.is_empty() {
            self.meta
                .delete_offsets(group, Some(free.clone()))
                .await
                .map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)?;
            if let Some(g) = self.offsets.lock().unwrap().get_mut(group) {
                for tp in &free {
                    g.remove(tp);
                }
            }
        }
        Ok(free
            .into_iter()
            .map(|tp| (tp, codes::NONE))
            .chain(
                busy.into_iter()
                    .map(|tp| (tp, codes::GROUP_SUBSCRIBED_TO_TOPIC)),
            )
            .collect())
    }

    /// Every committed offset of every group: (group, partition, offset).
    pub async fn committed(&self) -> Result<Vec<(String, TopicPartition, i64)>, i16> {
        let mut out = Vec::new();
        for (group, _, _) in self.list().await? {
            for (tp, o) in self.fetch(&group).await? {
                out.push((group.clone(), tp, o.offset));
            }
        }
        Ok(out)
    }

    /// Expires sessions and completes rebalances whose time came. Empty
    /// groups stay, so a group that fills again continues its generations
    /// (a member of an old generation can never pass for a current one).
    pub fn tick(&self) {
        let now = self.now_ms();
        for g in self.groups.lock().unwrap().values_mut() {
            g.tick(now);
        }
    }

    /// Forgets groups this broker no longer coordinates (the set of brokers
    /// changed): their members rediscover the coordinator, and the new one
    /// loads the offsets from the metadata service.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.groups.lock().unwrap().retain(|id, _| keep(id));
        self.offsets.lock().unwrap().retain(|id, _| keep(id));
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => self.tick(),
            }
        }
    }
}

/// Topics named in a consumer-protocol subscription (version prefix, then
/// the message); empty when the bytes are not one.
pub fn subscription_topics(metadata: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if metadata.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]);
    let mut body = metadata.slice(2..);
    let v = version.clamp(0, 3);
    std::panic::catch_unwind(move || ConsumerProtocolSubscription::decode(&mut body, v))
        .ok()
        .and_then(Result::ok)
        .map(|s| s.topics.into_iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

pub fn commit_entry(
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&str>,
    now: i64,
) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch,
        metadata: metadata.unwrap_or_default().to_string(),
        commit_timestamp: now,
    }
}
