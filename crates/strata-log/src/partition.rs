//! One partition led by this broker: assigns offsets (writing a retried
//! idempotent batch only once), holds the unsealed tail in memory, and
//! knows which sealed segments hold older offsets.
//!
//! All state sits behind one short-held mutex; nothing awaits while holding
//! it. The high watermark is published on a watch channel so acks=all
//! producers and long-polling fetches wake when a flush commits.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{Buf, Bytes, BytesMut};
use strata_common::config::TopicConfig;
use strata_common::TopicPartition;
use strata_format::batch::{set_base_offset, set_partition_leader_epoch, split_batches};
use strata_meta::{PartitionManifest, ProducerBatch, SegmentEntry};
use tokio::sync::watch;

use crate::producers::{BatchIds, ProducerState, Verdict};
use crate::LogError;

/// Batches as they arrived, with their assigned offsets.
#[derive(Clone, Debug)]
pub(crate) struct MemBatch {
    pub base: i64,
    pub last: i64,
    pub max_ts: i64,
    /// Broker time of the append (of the reload, for batches read back
    /// from the WAL): when its producer was last seen.
    pub append_ms: i64,
    pub data: Bytes,
}

pub(crate) struct PState {
    pub epoch: i32,
    pub config: TopicConfig,
    pub log_start: i64,
    pub next_offset: i64,
    pub hw: i64,
    /// Unsealed batches in offset order, flushed or not.
    pub mem: VecDeque<MemBatch>,
    pub mem_bytes: usize,
    /// Appended since the last flush began.
    pub unflushed: Vec<MemBatch>,
    pub unflushed_bytes: usize,
    /// When the oldest unsealed batch arrived (for segment.ms).
    pub mem_since_ms: Option<i64>,
    pub segments: Vec<SegmentEntry>,
    /// Idempotent producers as of `next_offset`.
    pub producers: ProducerState,
    /// Idempotent producers as of the last sealed offset: the base the
    /// next seal's snapshot is built on.
    pub sealed_producers: ProducerState,
    pub sealing: bool,
    /// Set when leadership was lost or the topic deleted: refuse everything.
    pub closed: bool,
}

/// Offsets given to one produce request's batches.
#[derive(Clone, Copy, Debug)]
pub struct AppendResult {
    pub base_offset: i64,
    /// The append time when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    /// Some batch was a retry of one already written: its original offsets
    /// are answered and nothing was written for it.
    pub duplicate: bool,
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: uuid::Uuid,
    pub(crate) state: Mutex<PState>,
    hw_tx: watch::Sender<i64>,
    /// Wakes durability waiters when the partition is given up, so acks=all
    /// producers hear NOT_LEADER at once instead of at their timeout.
    closed_notify: tokio::sync::Notify,
}

/// What a read found: batches from memory, or the segment to read them from.
pub(crate) enum Located {
    Memory(Vec<Bytes>),
    Segment(SegmentEntry),
    Nothing,
}

impl Partition {
    pub(crate) fn new(
        tp: TopicPartition,
        topic_id: uuid::Uuid,
        config: TopicConfig,
        manifest: &PartitionManifest,
        mut mem: Vec<MemBatch>,
        now_ms: i64,
    ) -> Self {
        // WAL ranges are dropped only once a segment covers all of them, so
        // the first ranges may repeat the end of the last segment; those
        // batches are read from the segment and must not be sealed again.
        let sealed_to = manifest.segments.last().map_or(-1, |s| s.last_offset);
        mem.retain(|b| b.last > sealed_to);
        let sealed_producers = match manifest.segments.last() {
            Some(s) => ProducerState::from_snapshot(s.producers.as_ref()),
            // Without segments, the WAL holds the whole log unless its
            // start was truncated away.
            None => ProducerState::new(manifest.log_start_offset == 0),
        };
        let mut producers = sealed_producers.clone();
        for b in &mem {
            producers.replay_batch(&b.data, b.append_ms);
        }
        let mem_bytes = mem.iter().map(|b| b.data.len()).sum();
        let mem_since_ms = if mem.is_empty() { None } else { Some(now_ms) };
        let (hw_tx, _) = watch::channel(manifest.end_offset);
        Self {
            tp,
            topic_id,
            state: Mutex::new(PState {
                epoch: manifest.leader_epoch,
                config,
                log_start: manifest.log_start_offset,
                next_offset: manifest.end_offset,
                hw: manifest.end_offset,
                mem: mem.into(),
                mem_bytes,
                unflushed: Vec::new(),
                unflushed_bytes: 0,
                mem_since_ms,
                segments: manifest.segments.clone(),
                producers,
                sealed_producers,
                sealing: false,
                closed: false,
            }),
            hw_tx,
            closed_notify: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, PState> {
        // A panic while holding this lock is a bug; the state is still
        // consistent because every update is a few assignments.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw_tx.borrow()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start
    }

    pub fn epoch(&self) -> i32 {
        self.lock().epoch
    }

    pub fn config(&self) -> TopicConfig {
        self.lock().config.clone()
    }

    pub(crate) fn set_config(&self, config: TopicConfig) {
        self.lock().config = config;
    }

    /// Validates `records` (one or more v2 batches) and assigns offsets.
    /// Nothing is kept unless every batch is valid. The batches are copied;
    /// [`Partition::append_in_place`] keeps a buffer the caller owns instead.
    pub fn append(&self, records: &Bytes, now_ms: i64) -> Result<AppendResult, LogError> {
        self.append_in_place(BytesMut::from(&records[..]), now_ms)
    }

    /// [`Partition::append`] that assigns offsets by rewriting the batches'
    /// headers in `records` itself and keeps them as slices of it, so the
    /// bytes a producer sent are not copied again on their way to the log.
    pub fn append_in_place(
        &self,
        records: BytesMut,
        now_ms: i64,
    ) -> Result<AppendResult, LogError> {
        let ranges = split_batches(&records)?;
        if ranges.is_empty() {
            return Err(LogError::Corrupt(strata_format::FormatError::Corrupt(
                "produce request without record batches".into(),
            )));
        }
        let mut st = self.lock();
        if st.closed {
            return Err(LogError::NotLeader(self.tp.clone()));
        }
        let max = st.config.max_message_bytes;
        for r in &ranges {
            if r.len() > max as usize {
                return Err(LogError::TooLarge { size: r.len(), max });
            }
        }
        let st = &mut *st;
        let log_append = st.config.log_append_time;
        // Every batch is checked before any is kept: a refused batch leaves
        // nothing behind, and neither do the batches before it.
        let mut pending = st.producers.pending();
        let mut planned = Vec::with_capacity(ranges.len());
        let mut next = st.next_offset;
        for r in ranges {
            let header = strata_format::batch::parse_header(&records[r.clone()])?;
            let max_ts = if log_append {
                now_ms
            } else {
                header.max_timestamp
            };
            let last = next + header.last_offset_delta as i64;
            let mut original = None;
            if let Some(ids) = BatchIds::of(&header) {
                match pending.check(&ids)? {
                    Verdict::Duplicate(b) => original = Some(b),
                    Verdict::Append => {
                        let batch = ProducerBatch {
                            first_seq: ids.first_seq,
                            last_seq: ids.last_seq,
                            base_offset: next,
                            last_offset: last,
                            timestamp: max_ts,
                        };
                        pending.record(&ids, batch, now_ms);
                    }
                }
            }
            if original.is_none() {
                next = last + 1;
            }
            planned.push((r, header.last_offset_delta, max_ts, original));
        }
        let changes = pending.into_changes();
        st.producers.commit(changes);

        let mut first: Option<(i64, i64)> = None;
        let mut last_offset = -1;
        let mut duplicate = false;
        let mut rest = records;
        let mut at = 0;
        for (r, delta, max_ts, original) in planned {
            rest.advance(r.start - at);
            let mut buf = rest.split_to(r.len());
            at = r.end;
            if let Some(b) = original {
                duplicate = true;
                first.get_or_insert((b.base_offset, b.timestamp));
                last_offset = last_offset.max(b.last_offset);
                continue;
            }
            let base = st.next_offset;
            set_base_offset(&mut buf, base);
            set_partition_leader_epoch(&mut buf, st.epoch);
            if log_append {
                strata_format::set_log_append_time(&mut buf, now_ms);
            }
            let last = base + delta as i64;
            let b = MemBatch {
                base,
                last,
                max_ts,
                append_ms: now_ms,
                data: buf.freeze(),
            };
            first.get_or_insert((base, max_ts));
            last_offset = last_offset.max(last);
            st.next_offset = last + 1;
            st.mem_bytes += b.data.len();
            st.unflushed_bytes += b.data.len();
            st.mem.push_back(b.clone());
            st.unflushed.push(b);
        }
        if st.mem_since_ms.is_none() && !st.mem.is_empty() {
            st.mem_since_ms = Some(now_ms);
        }
        let (base_offset, first_ts) = first.unwrap_or((st.next_offset, -1));
        Ok(AppendResult {
            base_offset,
            // A retry is answered with its original append time, as Kafka does.
            log_append_time: if log_append { first_ts } else { -1 },
            last_offset,
            log_start_offset: st.log_start,
            duplicate,
        })
    }

    /// Waits until the high watermark passes `offset` or `timeout` elapses.
    pub async fn wait_durable(
        &self,
        offset: i64,
        timeout: std::time::Duration,
    ) -> Result<(), LogError> {
        let mut rx = self.hw_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the checks, so a close in between still wakes us.
            let closed = self.closed_notify.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            // Committed before the partition was given up still counts.
            if *rx.borrow_and_update() > offset {
                return Ok(());
            }
            if self.lock().closed {
                return Err(LogError::NotLeader(self.tp.clone()));
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(LogError::Shutdown);
                    }
                }
                _ = &mut closed => {}
                _ = tokio::time::sleep_until(deadline) => return Err(LogError::Timeout),
            }
        }
    }

    pub(crate) fn take_unflushed(&self) -> Option<(i32, Vec<MemBatch>)> {
        let mut st = self.lock();
        if st.unflushed.is_empty() || st.closed {
            return None;
        }
        st.unflushed_bytes = 0;
        Some((st.epoch, std::mem::take(&mut st.unflushed)))
    }

    pub(crate) fn unflushed_bytes(&self) -> usize {
        self.lock().unflushed_bytes
    }

    pub(crate) fn advance_hw(&self, end: i64) {
        let mut st = self.lock();
        if end > st.hw {
            st.hw = end;
            drop(st);
            self.hw_tx.send_replace(end);
        }
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.closed_notify.notify_waiters();
    }

    /// Finds where `offset` lives, up to the high watermark.
    pub(crate) fn locate(&self, offset: i64, max_bytes: usize) -> Result<Located, LogError> {
        let st = self.lock();
        if st.closed {
            return Err(LogError::NotLeader(self.tp.clone()));
        }
        if offset < st.log_start || offset > st.hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: st.log_start,
                end: st.hw,
            });
        }
        if offset == st.hw {
            return Ok(Located::Nothing);
        }
        if let Some(first) = st.mem.front() {
            if offset >= first.base {
                // The batch holding `offset` is served whole, as Kafka does.
                let idx = st.mem.partition_point(|b| b.last < offset);
                let mut out = Vec::new();
                let mut size = 0;
                for b in st.mem.range(idx..) {
                    if b.base >= st.hw || (!out.is_empty() && size + b.data.len() > max_bytes) {
                        break;
                    }
                    size += b.data.len();
                    out.push(b.data.clone());
                }
                return Ok(Located::Memory(out));
            }
        }
        let idx = st.segments.partition_point(|s| s.last_offset < offset);
        match st.segments.get(idx) {
            Some(s) => Ok(Located::Segment(s.clone())),
            None => Ok(Located::Nothing),
        }
    }
}
