//! The metadata state machine: validated operations applied to plain data.
//! Pure, so a backend only has to make operations durable and replay them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use strata_common::{config, valid_topic_name, TopicPartition};

use crate::{
    CommittedOffset, Freed, MetaError, PartitionManifest, Result, SegmentEntry, TopicMeta,
    WalCommit,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Keyed "topic/partition" so the snapshot stays plain JSON.
    pub partitions: BTreeMap<String, PartitionManifest>,
    pub next_producer_id: i64,
    /// group -> topic -> partition -> committed offset.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeMap<String, BTreeMap<i32, CommittedOffset>>>,
    #[serde(skip)]
    pub(crate) wal_refs: HashMap<String, usize>,
}

/// A durable change. Ops are validated before they are logged, so applying
/// one never fails and replaying the log rebuilds the same state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Op {
    CreateTopic(TopicMeta),
    DeleteTopic(String),
    SetPartitions(String, i32),
    SetConfigs(String, BTreeMap<String, String>),
    Acquire(TopicPartition, i32, i32),
    CommitWal(Vec<WalCommit>),
    CommitSegment(TopicPartition, SegmentEntry),
    TruncateFront(TopicPartition, i64),
    ProducerId(i64),
    CommitOffsets(String, Vec<(TopicPartition, CommittedOffset)>),
    DeleteOffsets(String, Option<Vec<TopicPartition>>),
}

/// Topic config overrides Kafka would accept.
pub(crate) fn check_configs(configs: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in configs {
        config::validate(k, v).map_err(|e| MetaError::Storage(e.to_string()))?;
    }
    Ok(())
}

/// What every backend checks before creating a topic.
pub(crate) fn check_new_topic(
    name: &str,
    partitions: i32,
    configs: &BTreeMap<String, String>,
) -> Result<()> {
    if !valid_topic_name(name) {
        return Err(MetaError::UnknownTopic(name.to_string()));
    }
    if partitions < 1 {
        return Err(MetaError::InvalidPartitions(format!(
            "{partitions} partitions requested, at least 1 needed"
        )));
    }
    check_configs(configs)
}

/// A topic may only grow.
pub(crate) fn check_growth(t: &TopicMeta, total: i32) -> Result<()> {
    if total <= t.partitions {
        return Err(MetaError::InvalidPartitions(format!(
            "topic has {} partitions; the new count must be larger, got {total}",
            t.partitions
        )));
    }
    Ok(())
}

pub(crate) fn pkey(tp: &TopicPartition) -> String {
    format!("{}/{}", tp.topic, tp.partition)
}

impl State {
    pub fn rebuild_refs(&mut self) {
        self.wal_refs.clear();
        for m in self.partitions.values() {
            for r in &m.wal {
                *self.wal_refs.entry(r.key.clone()).or_default() += 1;
            }
        }
    }

    pub fn manifest(&self, tp: &TopicPartition) -> Result<&PartitionManifest> {
        self.partitions
            .get(&pkey(tp))
            .ok_or_else(|| MetaError::UnknownPartition(tp.clone()))
    }

    pub fn topic(&self, name: &str) -> Result<&TopicMeta> {
        self.topics
            .get(name)
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))
    }

    pub fn group_offsets(&self, group: &str) -> Vec<(TopicPartition, CommittedOffset)> {
        let Some(g) = self.groups.get(group) else {
            return Vec::new();
        };
        g.iter()
            .flat_map(|(t, ps)| {
                ps.iter()
                    .map(|(p, o)| (TopicPartition::new(t.as_str(), *p), o.clone()))
            })
            .collect()
    }

    /// The partition's manifest, or `Fenced` when `epoch` is not its leader epoch.
    pub fn check_epoch(&self, tp: &TopicPartition, epoch: i32) -> Result<&PartitionManifest> {
        let m = self.manifest(tp)?;
        if m.leader_epoch != epoch {
            return Err(MetaError::Fenced {
                tp: tp.clone(),
                current: m.leader_epoch,
                given: epoch,
            });
        }
        Ok(m)
    }

    /// Splits a WAL commit into the parts that apply; a re-sent commit whose
    /// range is already in is accepted without change (retries are safe).
    pub fn check_wal(&self, commits: &[WalCommit]) -> (Vec<WalCommit>, Vec<Result<()>>) {
        let mut apply = Vec::new();
        let mut results = Vec::new();
        for c in commits {
            let r = self.check_epoch(&c.tp, c.epoch).and_then(|m| {
                if c.range.base_offset < m.end_offset && m.wal.iter().any(|w| w.key == c.range.key)
                {
                    return Ok(false);
                }
                if c.range.base_offset != m.end_offset {
                    return Err(MetaError::OffsetMismatch {
                        tp: c.tp.clone(),
                        end: m.end_offset,
                        given: c.range.base_offset,
                    });
                }
                Ok(true)
            });
            match r {
                Ok(true) => {
                    apply.push(c.clone());
                    results.push(Ok(()));
                }
                Ok(false) => results.push(Ok(())),
                Err(e) => results.push(Err(e)),
            }
        }
        (apply, results)
    }

    /// Which WAL keys a segment commit or truncation would orphan.
    fn orphans(&self, dropped: &[String]) -> Vec<String> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for k in dropped {
            *counts.entry(k.as_str()).or_default() += 1;
        }
        let mut out: Vec<String> = counts
            .into_iter()
            .filter(|(k, n)| self.wal_refs.get(*k).copied().unwrap_or(0) <= *n)
            .map(|(k, _)| k.to_string())
            .collect();
        out.sort();
        out
    }

    pub fn preview_segment(&self, tp: &TopicPartition, seg: &SegmentEntry) -> Vec<String> {
        let Ok(m) = self.manifest(tp) else {
            return Vec::new();
        };
        let dropped: Vec<String> = m
            .wal
            .iter()
            .filter(|w| w.last_offset <= seg.last_offset)
            .map(|w| w.key.clone())
            .collect();
        self.orphans(&dropped)
    }

    pub fn preview_delete(&self, t: &TopicMeta) -> Vec<String> {
        let dropped: Vec<String> = (0..t.partitions)
            .filter_map(|p| self.manifest(&TopicPartition::new(t.name.as_str(), p)).ok())
            .flat_map(|m| m.wal.iter().map(|w| w.key.clone()))
            .collect();
        self.orphans(&dropped)
    }

    pub fn preview_truncate(&self, tp: &TopicPartition, start: i64) -> Freed {
        let Ok(m) = self.manifest(tp) else {
            return Freed::default();
        };
        let segments = m
            .segments
            .iter()
            .filter(|s| s.last_offset < start)
            .cloned()
            .collect();
        let dropped: Vec<String> = m
            .wal
            .iter()
            .filter(|w| w.last_offset < start)
            .map(|w| w.key.clone())
            .collect();
        Freed {
            segments,
            wal_keys: self.orphans(&dropped),
        }
    }

    fn unref(&mut self, key: &str) {
        if let Some(n) = self.wal_refs.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.wal_refs.remove(key);
            }
        }
    }

    pub fn apply(&mut self, op: Op) {
        match op {
            Op::CreateTopic(t) => {
                for p in 0..t.partitions {
                    self.partitions.insert(
                        pkey(&TopicPartition::new(t.name.as_str(), p)),
                        PartitionManifest {
                            leader: -1,
                            ..Default::default()
                        },
                    );
                }
                self.topics.insert(t.name.clone(), t);
            }
            Op::DeleteTopic(name) => {
                self.groups.retain(|_, g| {
                    g.remove(&name);
                    !g.is_empty()
                });
                if let Some(t) = self.topics.remove(&name) {
                    for p in 0..t.partitions {
                        if let Some(m) = self
                            .partitions
                            .remove(&pkey(&TopicPartition::new(name.as_str(), p)))
                        {
                            for w in &m.wal {
                                self.unref(&w.key);
                            }
                        }
                    }
                }
            }
            Op::SetPartitions(name, total) => {
                if let Some(t) = self.topics.get_mut(&name) {
                    for p in t.partitions..total {
                        self.partitions.insert(
                            pkey(&TopicPartition::new(name.as_str(), p)),
                            PartitionManifest {
                                leader: -1,
                                ..Default::default()
                            },
                        );
                    }
                    t.partitions = total;
                }
            }
            Op::SetConfigs(name, configs) => {
                if let Some(t) = self.topics.get_mut(&name) {
                    t.configs = configs;
                }
            }
            Op::Acquire(tp, broker, epoch) => {
                if let Some(m) = self.partitions.get_mut(&pkey(&tp)) {
                    m.leader = broker;
                    m.leader_epoch = epoch;
                }
            }
            Op::CommitWal(commits) => {
                for c in commits {
                    if let Some(m) = self.partitions.get_mut(&pkey(&c.tp)) {
                        m.end_offset = c.range.last_offset + 1;
                        *self.wal_refs.entry(c.range.key.clone()).or_default() += 1;
                        m.wal.push(c.range);
                    }
                }
            }
            Op::CommitSegment(tp, seg) => {
                let mut dropped = Vec::new();
                if let Some(m) = self.partitions.get_mut(&pkey(&tp)) {
                    m.wal.retain(|w| {
                        let keep = w.last_offset > seg.last_offset;
                        if !keep {
                            dropped.push(w.key.clone());
                        }
                        keep
                    });
                    m.segments.push(seg);
                    m.segments.sort_by_key(|s| s.base_offset);
                }
                for k in dropped {
                    self.unref(&k);
                }
            }
            Op::TruncateFront(tp, start) => {
                let mut dropped = Vec::new();
                if let Some(m) = self.partitions.get_mut(&pkey(&tp)) {
                    m.log_start_offset = m.log_start_offset.max(start);
                    m.segments.retain(|s| s.last_offset >= start);
                    m.wal.retain(|w| {
                        let keep = w.last_offset >= start;
                        if !keep {
                            dropped.push(w.key.clone());
                        }
                        keep
                    });
                }
                for k in dropped {
                    self.unref(&k);
                }
            }
            Op::ProducerId(next) => self.next_producer_id = next,
            Op::CommitOffsets(group, offsets) => {
                let g = self.groups.entry(group).or_default();
                for (tp, o) in offsets {
                    g.entry(tp.topic.to_string())
                        .or_default()
                        .insert(tp.partition, o);
                }
            }
            Op::DeleteOffsets(group, partitions) => match partitions {
                None => {
                    self.groups.remove(&group);
                }
                Some(tps) => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        for tp in tps {
                            if let Some(t) = g.get_mut(&*tp.topic) {
                                t.remove(&tp.partition);
                                if t.is_empty() {
                                    g.remove(&*tp.topic);
                                }
                            }
                        }
                        if g.is_empty() {
                            self.groups.remove(&group);
                        }
                    }
                }
            },
        }
    }
}
