//! One consumer group under Kafka's classic rebalance protocol, as a plain
//! state machine: requests and clock ticks go in, responses come out through
//! the one-shot senders the requests brought. No I/O and no timers, so every
//! transition is tested by calling methods with chosen times.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::codes;

/// Kafka's `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names Kafka's tools print and ListGroups filters on.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members: (id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn error(error: i16, member_id: &str) -> Self {
        Self {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(error: i16) -> Self {
        Self {
            error,
            ..Default::default()
        }
    }
}

/// What a JoinGroup carries.
#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+ clients accept MEMBER_ID_REQUIRED and rejoin with the id given.
    pub require_known_member_id: bool,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Session expiry, pushed forward by every request from the member.
    deadline_ms: i64,
    /// Order of first join, so the first member to join leads.
    joined_seq: u64,
    join: Option<oneshot::Sender<JoinOutcome>>,
    sync: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    /// This member's metadata for the group's chosen protocol.
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(n, _)| n == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, other: &[(String, Bytes)]) -> bool {
        self.protocols == other
    }
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending: HashMap<String, i64>,
    /// group.instance.id -> member id, for static members.
    statics: HashMap<String, String>,
    /// The rebalance completes at the latest here...
    rebalance_deadline_ms: i64,
    /// ...and not before here (group.initial.rebalance.delay.ms for a new group).
    join_not_before_ms: i64,
    initial_delay_ms: i64,
    next_seq: u64,
}

impl Group {
    pub fn new(id: &str, initial_delay_ms: i64) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline_ms: 0,
            join_not_before_ms: 0,
            initial_delay_ms,
            next_seq: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn new_member_id(&self, client_id: &str) -> String {
        format!("{}-{}", client_id, uuid::Uuid::new_v4())
    }

    /// Checks member id, static identity and generation the way every
    /// in-group request does. `generation: None` skips the generation check.
    pub fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: Option<i32>,
    ) -> Result<(), i16> {
        if let Some(inst) = instance_id {
            match self.statics.get(inst) {
                Some(id) if id != member_id => return Err(codes::FENCED_INSTANCE_ID),
                None if !self.members.contains_key(member_id) => {
                    return Err(codes::UNKNOWN_MEMBER_ID)
                }
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(codes::UNKNOWN_MEMBER_ID);
        }
        if let Some(g) = generation {
            if g != self.generation {
                return Err(codes::ILLEGAL_GENERATION);
            }
        }
        Ok(())
    }

    fn touch(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
    }

    /// True when some protocol is offered by every member and by `offered`.
    fn protocols_compatible(&self, protocol_type: &str, offered: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        offered.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    pub fn join(&mut self, req: JoinRequest, now_ms: i64, reply: oneshot::Sender<JoinOutcome>) {
        let fail = |reply: oneshot::Sender<JoinOutcome>, code: i16, id: &str| {
            let _ = reply.send(JoinOutcome::error(code, id));
        };
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return fail(reply, codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
            return fail(reply, codes::INVALID_SESSION_TIMEOUT, &req.member_id);
        }
        let known = self.members.contains_key(&req.member_id);
        // A known member may change its protocols; others must fit the group.
        let compatible = if known && self.members.len() == 1 {
            true
        } else {
            self.protocols_compatible(&req.protocol_type, &req.protocols)
        };
        if !compatible {
            return fail(reply, codes::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
        }

        if req.member_id.is_empty() {
            if let Some(inst) = req.instance_id.clone() {
                return self.join_static_new_id(req, inst, now_ms, reply);
            }
            let id = self.new_member_id(&req.client_id);
            if req.require_known_member_id {
                self.pending
                    .insert(id.clone(), now_ms + req.session_timeout_ms as i64);
                return fail(reply, codes::MEMBER_ID_REQUIRED, &id);
            }
            return self.add_and_rebalance(id, req, now_ms, reply);
        }

        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_and_rebalance(id, req, now_ms, reply);
        }
        if let Err(code) = self.check_member(&req.member_id, req.instance_id.as_deref(), None) {
            return fail(reply, code, &req.member_id);
        }
        self.rejoin(req, now_ms, reply);
    }

    /// A static member (re)joining without a member id: it gets a fresh id
    /// and the previous holder of the instance id is fenced.
    fn join_static_new_id(
        &mut self,
        req: JoinRequest,
        inst: String,
        now_ms: i64,
        reply: oneshot::Sender<JoinOutcome>,
    ) {
        let new_id = self.new_member_id(&req.client_id);
        let Some(old_id) = self.statics.get(&inst).cloned() else {
            self.statics.insert(inst, new_id.clone());
            return self.add_and_rebalance(new_id, req, now_ms, reply);
        };
        let Some(mut m) = self.members.remove(&old_id) else {
            self.statics.insert(inst, new_id.clone());
            return self.add_and_rebalance(new_id, req, now_ms, reply);
        };
        if let Some(r) = m.join.take() {
            let _ = r.send(JoinOutcome::error(codes::FENCED_INSTANCE_ID, &old_id));
        }
        if let Some(r) = m.sync.take() {
            let _ = r.send(SyncOutcome::error(codes::FENCED_INSTANCE_ID));
        }
        let unchanged = m.same_protocols(&req.protocols);
        m.id = new_id.clone();
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.protocols = req.protocols.clone();
        m.deadline_ms = now_ms + req.session_timeout_ms as i64;
        self.members.insert(new_id.clone(), m);
        self.statics.insert(inst, new_id.clone());
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        // A static member coming back unchanged keeps its assignment without
        // a rebalance; the leader must rebalance so it learns the members.
        if self.state == GroupState::Stable && unchanged && !was_leader {
            let _ = reply.send(self.outcome_for(&new_id, false));
            return;
        }
        self.members.get_mut(&new_id).unwrap().join = Some(reply);
        self.prepare_rebalance(now_ms);
        self.try_complete_join(now_ms);
    }

    fn add_and_rebalance(
        &mut self,
        id: String,
        req: JoinRequest,
        now_ms: i64,
        reply: oneshot::Sender<JoinOutcome>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(inst) = &req.instance_id {
            self.statics.insert(inst.clone(), id.clone());
        }
        self.next_seq += 1;
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                deadline_ms: now_ms + req.session_timeout_ms as i64,
                joined_seq: self.next_seq,
                join: Some(reply),
                sync: None,
            },
        );
        if self.state == GroupState::PreparingRebalance && self.join_not_before_ms > now_ms {
            // Each newcomer during the initial delay buys the others a little
            // more time, so a fleet starting together lands in one generation.
            self.join_not_before_ms =
                (now_ms + self.initial_delay_ms).min(self.rebalance_deadline_ms);
        }
        self.prepare_rebalance(now_ms);
        self.try_complete_join(now_ms);
    }

    fn rejoin(&mut self, req: JoinRequest, now_ms: i64, reply: oneshot::Sender<JoinOutcome>) {
        let id = req.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let m = self.members.get_mut(&id).expect("checked");
        let unchanged = m.same_protocols(&req.protocols);
        m.protocols = req.protocols;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.deadline_ms = now_ms + m.session_timeout_ms as i64;
        match self.state {
            GroupState::CompletingRebalance | GroupState::Stable if unchanged && !is_leader => {
                let _ = reply.send(self.outcome_for(&id, false));
            }
            GroupState::CompletingRebalance if unchanged => {
                let _ = reply.send(self.outcome_for(&id, true));
            }
            _ => {
                if let Some(old) = m.join.replace(reply) {
                    let _ = old.send(JoinOutcome::error(codes::REBALANCE_IN_PROGRESS, &id));
                }
                self.prepare_rebalance(now_ms);
                self.try_complete_join(now_ms);
            }
        }
    }

    fn outcome_for(&self, member_id: &str, with_members: bool) -> JoinOutcome {
        let members = if with_members {
            let mut ms: Vec<&Member> = self.members.values().collect();
            ms.sort_by_key(|m| m.joined_seq);
            ms.iter()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.metadata(self.protocol.as_deref()),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: codes::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    fn prepare_rebalance(&mut self, now_ms: i64) {
        match self.state {
            GroupState::PreparingRebalance => return,
            GroupState::CompletingRebalance => {
                for m in self.members.values_mut() {
                    if let Some(r) = m.sync.take() {
                        let _ = r.send(SyncOutcome::error(codes::REBALANCE_IN_PROGRESS));
                    }
                }
            }
            GroupState::Empty => {
                self.join_not_before_ms = now_ms + self.initial_delay_ms;
            }
            GroupState::Stable => self.join_not_before_ms = now_ms,
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(m.session_timeout_ms))
            .max()
            .unwrap_or(0) as i64;
        self.rebalance_deadline_ms = now_ms + timeout;
        self.join_not_before_ms = self.join_not_before_ms.min(self.rebalance_deadline_ms);
        self.state = GroupState::PreparingRebalance;
        tracing::debug!(group = %self.id, generation = self.generation, "preparing rebalance");
    }

    /// Finishes the join phase once every member has rejoined (or the
    /// rebalance timeout passed, dropping those that did not).
    fn try_complete_join(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_in = self.pending.is_empty() && self.members.values().all(|m| m.join.is_some());
        let timed_out = now_ms >= self.rebalance_deadline_ms;
        if !(timed_out || all_in && now_ms >= self.join_not_before_ms) {
            return;
        }
        let late: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in late {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removing");
            self.drop_member(&id);
        }
        self.pending.clear();
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.choose_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.joined_seq)
                .map(|m| m.id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.outcome_for(&id, id == leader);
            let m = self.members.get_mut(&id).unwrap();
            m.assignment = Bytes::new();
            m.deadline_ms = now_ms + m.session_timeout_ms as i64;
            if let Some(r) = m.join.take() {
                let _ = r.send(outcome);
            }
        }
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol, "rebalance joined");
    }

    /// The protocol every member supports that the members rank highest,
    /// by summing each member's preference order.
    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .min_by_key(|n| {
                self.members
                    .values()
                    .map(|m| m.protocols.iter().position(|(p, _)| p == *n).unwrap_or(0))
                    .sum::<usize>()
            })
            .cloned()
    }

    fn drop_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                if self.statics.get(inst).map(String::as_str) == Some(id) {
                    self.statics.remove(inst);
                }
            }
            if let Some(r) = m.join.take() {
                let _ = r.send(JoinOutcome::error(codes::UNKNOWN_MEMBER_ID, id));
            }
            if let Some(r) = m.sync.take() {
                let _ = r.send(SyncOutcome::error(codes::UNKNOWN_MEMBER_ID));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// A member is gone (left or expired): the rest rebalance.
    fn remove_member(&mut self, id: &str, now_ms: i64) {
        self.drop_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation += 1;
                    self.state = GroupState::Empty;
                    self.protocol = None;
                    self.leader = None;
                } else {
                    self.prepare_rebalance(now_ms);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
        reply: oneshot::Sender<SyncOutcome>,
    ) {
        if let Err(code) = self.check_member(member_id, instance_id, Some(generation)) {
            let _ = reply.send(SyncOutcome::error(code));
            return;
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            let _ = reply.send(SyncOutcome::error(codes::INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        self.touch(member_id, now_ms);
        match self.state {
            GroupState::Empty => {
                let _ = reply.send(SyncOutcome::error(codes::UNKNOWN_MEMBER_ID));
            }
            GroupState::PreparingRebalance => {
                let _ = reply.send(SyncOutcome::error(codes::REBALANCE_IN_PROGRESS));
            }
            GroupState::Stable => {
                let _ = reply.send(self.sync_outcome(member_id));
            }
            GroupState::CompletingRebalance => {
                self.members.get_mut(member_id).unwrap().sync = Some(reply);
                if self.leader.as_deref() != Some(member_id) {
                    return;
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                self.state = GroupState::Stable;
                let ids: Vec<String> = self.members.keys().cloned().collect();
                for id in ids {
                    let out = self.sync_outcome(&id);
                    if let Some(r) = self.members.get_mut(&id).unwrap().sync.take() {
                        let _ = r.send(out);
                    }
                }
                tracing::info!(group = %self.id, generation = self.generation, "group stable");
            }
        }
    }

    fn sync_outcome(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: codes::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> i16 {
        if self.state == GroupState::Empty {
            return codes::UNKNOWN_MEMBER_ID;
        }
        if let Err(code) = self.check_member(member_id, instance_id, Some(generation)) {
            return code;
        }
        self.touch(member_id, now_ms);
        match self.state {
            GroupState::PreparingRebalance => codes::REBALANCE_IN_PROGRESS,
            _ => codes::NONE,
        }
    }

    /// LeaveGroup for one member, by member id and/or static instance id.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now_ms: i64) -> i16 {
        if self.pending.remove(member_id).is_some() {
            return codes::NONE;
        }
        let id = match instance_id {
            Some(inst) => match self.statics.get(inst) {
                Some(id) if member_id.is_empty() || id == member_id => id.clone(),
                Some(_) => return codes::FENCED_INSTANCE_ID,
                None => return codes::UNKNOWN_MEMBER_ID,
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return codes::UNKNOWN_MEMBER_ID;
        }
        tracing::info!(group = %self.id, member = %id, "member left");
        self.remove_member(&id, now_ms);
        codes::NONE
    }

    /// Expires sessions and finishes joins whose time has come.
    pub fn tick(&mut self, now_ms: i64) {
        self.pending.retain(|_, deadline| *deadline > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none() && m.sync.is_none() && m.deadline_ms <= now_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, now_ms);
        }
        self.try_complete_join(now_ms);
    }

    /// May a commit from this member and generation go in? Simple commits
    /// (no member, generation -1) are only for groups nobody is in.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), i16> {
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(codes::UNKNOWN_MEMBER_ID)
            };
        }
        self.check_member(member_id, instance_id, Some(generation))?;
        if self.state == GroupState::CompletingRebalance {
            return Err(codes::REBALANCE_IN_PROGRESS);
        }
        self.touch(member_id, now_ms);
        Ok(())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
