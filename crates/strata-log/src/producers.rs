//! Idempotent producers on one partition: each producer id's epoch and its
//! last few batches, so a retried batch is answered with its first offsets
//! instead of being written twice, and a gap or a stale epoch is refused.
//!
//! The rules are Kafka's (its ProducerStateManager), with one choice of our
//! own: a producer this partition has never seen must start at sequence 0,
//! unless the state may have lost it (see [`ProducerState::complete`]).
//! Pure: the partition feeds it batch headers and offsets.

use std::collections::{HashMap, VecDeque};

use strata_format::BatchHeader;
use strata_meta::{ProducerBatch, ProducerEntry, ProducerSnapshot};

use crate::LogError;

/// Batches remembered per producer. Kafka's clients keep at most five
/// requests in flight per partition with idempotence on, so any retry of a
/// batch not yet acknowledged is among the last five written.
pub const BATCHES_KEPT: usize = 5;

/// The producer fields of one batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchIds {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

impl BatchIds {
    /// `None` for batches of producers without idempotence (producer id -1).
    pub fn of(h: &BatchHeader) -> Option<Self> {
        (h.producer_id >= 0).then(|| BatchIds {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq: seq_add(h.base_sequence, h.last_offset_delta),
        })
    }
}

/// Sequence numbers wrap from i32::MAX to 0, as Kafka's clients count them.
fn seq_add(seq: i32, n: i32) -> i32 {
    let sum = i64::from(seq) + i64::from(n.max(0));
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

/// What to do with a batch that passed the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// A retry of a batch already written: write nothing and answer with
    /// where the original went.
    Duplicate(ProducerBatch),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    last_seen_ms: i64,
    /// Oldest first.
    batches: VecDeque<ProducerBatch>,
}

impl Producer {
    fn check(&self, ids: &BatchIds) -> Result<Verdict, LogError> {
        if ids.epoch < self.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: ids.producer_id,
                epoch: ids.epoch,
                current: self.epoch,
            });
        }
        let expected = match self.batches.back() {
            Some(last) if ids.epoch == self.epoch => {
                if let Some(b) = self
                    .batches
                    .iter()
                    .find(|b| b.first_seq == ids.first_seq && b.last_seq == ids.last_seq)
                {
                    return Ok(Verdict::Duplicate(*b));
                }
                seq_add(last.last_seq, 1)
            }
            // A new epoch restarts the sequence.
            _ => 0,
        };
        if ids.first_seq != expected {
            return Err(out_of_order(ids, expected));
        }
        Ok(Verdict::Append)
    }

    fn record(&mut self, ids: &BatchIds, batch: ProducerBatch, now_ms: i64) {
        if ids.epoch != self.epoch {
            // Batches of an older epoch can no longer be retried.
            self.batches.clear();
            self.epoch = ids.epoch;
        }
        if self.batches.len() == BATCHES_KEPT {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }
}

fn out_of_order(ids: &BatchIds, expected: i32) -> LogError {
    LogError::OutOfOrderSequence {
        producer_id: ids.producer_id,
        epoch: ids.epoch,
        expected,
        got: ids.first_seq,
    }
}

/// Every idempotent producer of one partition, as of some offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
    /// True while no producer's state can have been dropped. Only then is a
    /// producer we do not know one that never wrote here, so its first batch
    /// must have sequence 0; otherwise any sequence is taken, as Kafka does
    /// since 2.5 for every unknown producer. Dropped means: expired after
    /// producer.id.expiration.ms, or rebuilt from a log whose older part
    /// has no snapshot (truncated away, or sealed before snapshots existed).
    complete: bool,
}

impl ProducerState {
    pub fn new(complete: bool) -> Self {
        Self {
            producers: HashMap::new(),
            complete,
        }
    }

    /// The state kept with a segment; `None` (a segment sealed before
    /// snapshots were kept) gives an empty, incomplete state.
    pub fn from_snapshot(snapshot: Option<&ProducerSnapshot>) -> Self {
        let Some(s) = snapshot else {
            return Self::new(false);
        };
        let producers = s
            .producers
            .iter()
            .map(|e| {
                let p = Producer {
                    epoch: e.epoch,
                    last_seen_ms: e.last_seen_ms,
                    batches: e.batches.iter().copied().collect(),
                };
                (e.producer_id, p)
            })
            .collect();
        Self {
            producers,
            complete: s.complete,
        }
    }

    pub fn snapshot(&self) -> ProducerSnapshot {
        let mut producers: Vec<ProducerEntry> = self
            .producers
            .iter()
            .map(|(id, p)| ProducerEntry {
                producer_id: *id,
                epoch: p.epoch,
                last_seen_ms: p.last_seen_ms,
                batches: p.batches.iter().copied().collect(),
            })
            .collect();
        producers.sort_by_key(|e| e.producer_id);
        ProducerSnapshot {
            complete: self.complete,
            producers,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Starts checking one produce request against this state.
    pub fn pending(&self) -> Pending<'_> {
        Pending {
            base: self,
            touched: HashMap::new(),
        }
    }

    /// Keeps what a fully checked request changed.
    pub fn commit(&mut self, changes: Changes) {
        self.producers.extend(changes.0);
    }

    /// Takes a batch already in the log, without checks: replaying the log
    /// must rebuild the state its appends left.
    pub fn replay(&mut self, ids: &BatchIds, batch: ProducerBatch, now_ms: i64) {
        let p = self.producers.entry(ids.producer_id).or_insert(Producer {
            epoch: ids.epoch,
            last_seen_ms: now_ms,
            batches: VecDeque::new(),
        });
        if ids.epoch >= p.epoch {
            p.record(ids, batch, now_ms);
        }
    }

    /// Replays one stored batch given whole (its base offset assigned).
    pub fn replay_batch(&mut self, data: &[u8], append_ms: i64) {
        let Ok(h) = strata_format::parse_header(data) else {
            return;
        };
        if let Some(ids) = BatchIds::of(&h) {
            let batch = ProducerBatch {
                first_seq: ids.first_seq,
                last_seq: ids.last_seq,
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
                timestamp: h.max_timestamp,
            };
            self.replay(&ids, batch, append_ms);
        }
    }

    /// Forgets producers not seen for `expiration_ms` (Kafka's
    /// producer.id.expiration.ms), so the state does not grow forever.
    /// Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, p| now_ms.saturating_sub(p.last_seen_ms) < expiration_ms);
        let dropped = before - self.producers.len();
        if dropped > 0 {
            self.complete = false;
        }
        dropped
    }
}

/// The producers one request changed, to [`ProducerState::commit`].
#[derive(Debug, Default)]
pub struct Changes(HashMap<i64, Producer>);

/// One produce request being checked batch by batch: each batch sees the
/// ones before it, while the partition's state stays untouched until every
/// batch has passed.
pub struct Pending<'a> {
    base: &'a ProducerState,
    touched: HashMap<i64, Producer>,
}

impl Pending<'_> {
    fn current(&self, id: i64) -> Option<&Producer> {
        self.touched
            .get(&id)
            .or_else(|| self.base.producers.get(&id))
    }

    pub fn check(&self, ids: &BatchIds) -> Result<Verdict, LogError> {
        match self.current(ids.producer_id) {
            Some(p) => p.check(ids),
            None if self.base.complete && ids.first_seq != 0 => Err(out_of_order(ids, 0)),
            None => Ok(Verdict::Append),
        }
    }

    /// Notes a batch that will be appended at `batch`'s offsets.
    pub fn record(&mut self, ids: &BatchIds, batch: ProducerBatch, now_ms: i64) {
        if !self.touched.contains_key(&ids.producer_id) {
            let p = self.base.producers.get(&ids.producer_id).cloned();
            let p = p.unwrap_or(Producer {
                epoch: ids.epoch,
                last_seen_ms: now_ms,
                batches: VecDeque::new(),
            });
            self.touched.insert(ids.producer_id, p);
        }
        if let Some(p) = self.touched.get_mut(&ids.producer_id) {
            p.record(ids, batch, now_ms);
        }
    }

    pub fn into_changes(self) -> Changes {
        Changes(self.touched)
    }
}

#[cfg(test)]
#[path = "producers_tests.rs"]
mod tests;
