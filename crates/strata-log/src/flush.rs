//! The WAL flusher: every `wal.flush.ms` (or sooner when `wal.flush.bytes`
//! are pending) it writes ONE object holding the new batches of every
//! partition this broker leads, then commits each partition's new end
//! offset in one metadata call. Only then does the high watermark move.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::PutPayload;
use strata_meta::{WalCommit, WalRange};
use strata_store::RetryPolicy;

use crate::manager::Inner;
use crate::partition::{MemBatch, Partition};

/// One partition's share of a WAL object being written.
struct Share {
    partition: Arc<Partition>,
    epoch: i32,
    range: WalRange,
}

/// Flush retries never give up (acknowledged data depends on them); this
/// only paces them, with the store layer's jittered exponential backoff.
const RETRY: RetryPolicy = RetryPolicy {
    base_delay: Duration::from_millis(40),
    max_delay: Duration::from_secs(2),
    max_attempts: u32::MAX,
    attempt_timeout: Duration::from_secs(30),
};

pub(crate) fn wal_key(broker: i32, boot: &str, seq: u64) -> String {
    format!("wal/{broker}/{boot}-{seq:012}")
}

/// Splits a WAL range's bytes back into the batches it holds, read back at
/// `now_ms`.
pub(crate) fn batches_of(
    range: &WalRange,
    data: Bytes,
    now_ms: i64,
) -> Result<Vec<MemBatch>, crate::LogError> {
    let mut out = Vec::new();
    for r in strata_format::batch::split_batches(&data)? {
        let h = strata_format::batch::parse_header(&data[r.clone()])?;
        out.push(MemBatch {
            base: h.base_offset,
            last: h.last_offset(),
            max_ts: h.max_timestamp,
            append_ms: now_ms,
            // Its own copy: a slice would keep the whole WAL object (every
            // partition's share of it) alive for as long as this batch, in the
            // tail and then in the segment cache, which weighs only the slice.
            data: Bytes::copy_from_slice(&data[r]),
        });
    }
    if out.first().map(|b| b.base) != Some(range.base_offset)
        || out.last().map(|b| b.last) != Some(range.last_offset)
    {
        return Err(crate::LogError::Store(format!(
            "wal object {} bytes {}..{} do not hold offsets {}..={}",
            range.key, range.start, range.end, range.base_offset, range.last_offset
        )));
    }
    Ok(out)
}

/// A WAL object's body built from the batches themselves: large batches are
/// sent as they are, small ones are copied together so a body of thousands
/// of 100-byte batches is not thousands of chunks. Copying every byte into
/// one buffer was the broker's largest user-space copy on 1 KiB produce.
#[derive(Default)]
struct Body {
    chunks: Vec<Bytes>,
    small: BytesMut,
    len: usize,
}

/// Batches at least this large go into the body without a copy.
const SHARED_CHUNK_BYTES: usize = 32 << 10;

impl Body {
    fn push(&mut self, data: &Bytes) {
        self.len += data.len();
        if data.len() < SHARED_CHUNK_BYTES {
            self.small.extend_from_slice(data);
            return;
        }
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
        self.chunks.push(data.clone());
    }

    fn len(&self) -> usize {
        self.len
    }

    fn finish(mut self) -> PutPayload {
        if !self.small.is_empty() {
            self.chunks.push(self.small.freeze());
        }
        self.chunks.into_iter().collect()
    }
}

/// One WAL object being written: its bytes and each partition's share.
pub(crate) struct Prepared {
    key: String,
    payload: PutPayload,
    shares: Vec<Share>,
    size: usize,
    started: std::time::Instant,
}

impl Inner {
    /// Runs one flush if anything is pending; returns whether it wrote.
    /// Retries until the object is written and committed: acknowledged
    /// acks=1 data and waiting acks=all producers depend on it.
    pub(crate) async fn flush_once(&self, seq: u64) -> bool {
        let Some(p) = self.prepare_flush(seq).await else {
            return false;
        };
        self.put_flush(&p).await;
        self.commit_flush(p).await;
        true
    }

    /// Takes every led partition's unflushed batches into one object body, in
    /// the order flushes are numbered; `None` when nothing is pending.
    pub(crate) async fn prepare_flush(&self, seq: u64) -> Option<Prepared> {
        let partitions: Vec<Arc<Partition>> =
            self.partitions.read().await.values().cloned().collect();
        let mut body = Body::default();
        let mut shares = Vec::new();
        let key = wal_key(self.config.broker_id, &self.boot_id, seq);
        for p in partitions {
            let Some((epoch, batches)) = p.take_unflushed() else {
                continue;
            };
            let start = body.len() as u64;
            let mut max_ts = i64::MIN;
            for b in &batches {
                body.push(&b.data);
                max_ts = max_ts.max(b.max_ts);
            }
            let range = WalRange {
                key: key.clone(),
                start,
                end: body.len() as u64,
                base_offset: batches[0].base,
                last_offset: batches[batches.len() - 1].last,
                max_timestamp: max_ts,
            };
            shares.push(Share {
                partition: p,
                epoch,
                range,
            });
        }
        if shares.is_empty() {
            return None;
        }
        Some(Prepared {
            key,
            size: body.len(),
            payload: body.finish(),
            shares,
            started: std::time::Instant::now(),
        })
    }

    /// Writes the object, retrying until it is stored. Several may be in flight.
    pub(crate) async fn put_flush(&self, p: &Prepared) {
        let path = Path::from(p.key.as_str());
        let mut attempt = 0u32;
        loop {
            match self.store.put(&path, p.payload.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(key = p.key, attempt, error = %e, "wal put failed; retrying");
                    tokio::time::sleep(RETRY.backoff(attempt)).await;
                }
            }
        }
    }

    /// Commits each partition's new end offset and moves the high watermarks.
    /// Callers commit flushes in the order they were prepared: a partition's
    /// ranges must join up.
    pub(crate) async fn commit_flush(&self, p: Prepared) {
        let put_us = p.started.elapsed().as_micros() as u64;
        let commits: Vec<WalCommit> = p
            .shares
            .iter()
            .map(|s| WalCommit {
                tp: s.partition.tp.clone(),
                epoch: s.epoch,
                range: s.range.clone(),
            })
            .collect();
        let mut attempt = 0u32;
        let results = loop {
            match self.meta.commit_wal(commits.clone()).await {
                Ok(r) => break r,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(key = p.key, attempt, error = %e, "wal commit failed; retrying");
                    tokio::time::sleep(RETRY.backoff(attempt)).await;
                }
            }
        };
        for (share, result) in p.shares.iter().zip(results) {
            match result {
                Ok(()) => share.partition.advance_hw(share.range.last_offset + 1),
                Err(e) => {
                    // Fenced: another leader owns it now. Its unflushed data
                    // was never acknowledged with acks=all.
                    tracing::warn!(tp = %share.partition.tp, error = %e, "wal commit refused; giving up the partition");
                    share.partition.close();
                }
            }
        }
        tracing::debug!(
            key = p.key,
            bytes = p.size,
            partitions = p.shares.len(),
            put_us,
            total_us = p.started.elapsed().as_micros() as u64,
            "wal flushed"
        );
        self.hw_changed.notify_waiters();
        self.backpressure.notify_waiters();
    }
}
