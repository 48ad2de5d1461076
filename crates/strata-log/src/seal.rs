//! Sealing (the unsealed tail becomes one Parquet object committed to the
//! manifest), retention and log-start moves, and timestamp lookups.

use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;
use strata_format::segment::{write_segment_grouped, SegmentInfo, SegmentWriteOptions};
use strata_meta::{Freed, SegmentEntry};

use crate::manager::Inner;
use crate::partition::Partition;
use crate::producers::ProducerState;
use crate::LogError;

/// Seals the flushed part of the tail if it reached segment.bytes or is
/// older than segment.ms; returns whether it sealed a segment (the caller
/// calls again, so a tail many segments long drains in one pass).
/// `force` seals whatever is flushed regardless of size and age.
pub(crate) async fn maybe_seal(inner: &Arc<Inner>, part: &Arc<Partition>, force: bool) -> bool {
    let now = inner.clock.now_ms();
    let (batches, epoch, producers) = {
        let mut st = part.lock();
        if st.sealing || st.closed {
            return false;
        }
        let segment_bytes = st.config.segment_bytes as usize;
        let flushed = || st.mem.iter().take_while(|b| b.last < st.hw);
        let bytes: usize = flushed().map(|b| b.data.len()).sum();
        let aged = st
            .mem_since_ms
            .is_some_and(|t| now.saturating_sub(t) >= st.config.segment_ms);
        if flushed().next().is_none() || (bytes < segment_bytes && !aged && !force) {
            return false;
        }
        // Cut at segment.bytes so one seal never holds much more than that.
        let mut size = 0usize;
        let cut: Vec<_> = flushed()
            .take_while(|b| {
                let take = size < segment_bytes;
                size += b.data.len();
                take
            })
            .cloned()
            .collect();
        st.sealing = true;
        (cut, st.epoch, st.sealed_producers.clone())
    };
    let result = seal(inner, part, batches, epoch, producers).await;
    let mut st = part.lock();
    st.sealing = false;
    match result {
        Ok((entry, producers)) => {
            st.sealed_producers = producers;
            let expired = st
                .producers
                .expire(now, inner.config.producer_id_expiration_ms);
            if expired > 0 {
                tracing::debug!(tp = %part.tp, expired, "idle producers forgotten");
            }
            while st.mem.front().is_some_and(|b| b.last <= entry.last_offset) {
                if let Some(b) = st.mem.pop_front() {
                    st.mem_bytes -= b.data.len();
                }
            }
            st.mem_since_ms = if st.mem.is_empty() { None } else { Some(now) };
            st.segments.push(entry);
            drop(st);
            inner.backpressure.notify_waiters();
            true
        }
        Err(e) => {
            tracing::warn!(tp = %part.tp, error = %e, "sealing failed; will retry");
            if let LogError::Meta(m) = &e {
                if m.is_fenced() {
                    st.closed = true;
                }
            }
            false
        }
    }
}

async fn seal(
    inner: &Arc<Inner>,
    part: &Arc<Partition>,
    batches: Vec<crate::partition::MemBatch>,
    epoch: i32,
    mut producers: ProducerState,
) -> Result<(SegmentEntry, ProducerState), LogError> {
    // The snapshot holds the state as of the segment's last offset, so a
    // new leader replays only the WAL ranges after it.
    for b in &batches {
        producers.replay_batch(&b.data, b.append_ms);
    }
    producers.expire(inner.clock.now_ms(), inner.config.producer_id_expiration_ms);
    let base = batches[0].base;
    let last = batches[batches.len() - 1].last;
    let max_ts = batches.iter().map(|b| b.max_ts).max().unwrap_or(-1);
    let info = SegmentInfo {
        topic: part.tp.topic.to_string(),
        topic_id: part.topic_id.to_string(),
        partition: part.tp.partition,
    };
    let opts = SegmentWriteOptions {
        row_group_rows: inner.config.row_group_rows,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    // Decoded a batch at a time: only one row group's records are in
    // memory beside the raw tail.
    let (file, row_groups) = tokio::task::spawn_blocking(move || {
        let decoded = batches
            .iter()
            .map(|b| strata_format::decode_checked_batch(&b.data));
        let (file, groups) = write_segment_grouped(&info, decoded, &opts)?;
        // Each row group holds whole batches, so its cached form is the raw batches
        // it was written from: readers right behind the writer (a consumer a few
        // seconds back, a replay soon after) then never wait on a GET and decode.
        let raw: Vec<_> = groups
            .iter()
            .map(|g| {
                let group = g.iter().map(|&i| &batches[i]);
                Arc::new(group.map(|b| (b.base, b.last, b.data.clone())).collect())
            })
            .collect();
        Ok::<_, LogError>((file, raw))
    })
    .await
    .map_err(|e| LogError::Store(format!("seal task: {e}")))??;
    let encode_ms = started.elapsed().as_millis() as u64;
    let key = strata_common::segment_key(&part.tp.topic, part.tp.partition, base);
    let size = file.len() as u64;
    strata_store::put_large(
        inner.store.as_ref(),
        &Path::from(key.as_str()),
        file.clone(),
        inner.config.multipart_part_bytes,
    )
    .await
    .map_err(|e| LogError::Store(e.to_string()))?;
    let put_ms = started.elapsed().as_millis() as u64 - encode_ms;
    let entry = SegmentEntry {
        base_offset: base,
        last_offset: last,
        key: key.clone(),
        size_bytes: size,
        max_timestamp: max_ts,
        producers: Some(producers.snapshot()),
    };
    let orphans = inner
        .meta
        .commit_segment(&part.tp, epoch, entry.clone())
        .await?;
    inner.reader.insert_sealed(&entry, &file, row_groups);
    tracing::debug!(
        tp = %part.tp, key, base, last, bytes = size, encode_ms, put_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "segment sealed"
    );
    delete_keys(inner.store.as_ref(), paths(orphans)).await;
    Ok((entry, producers))
}

/// Deletes objects no manifest references any more; a failure is logged and
/// left for the start-up WAL collection or an operator.
pub(crate) async fn delete_keys(store: &dyn ObjectStore, keys: impl IntoIterator<Item = Path>) {
    for k in keys {
        if let Err(e) = store.delete(&k).await {
            tracing::warn!(key = %k, error = %e, "deleting unreferenced object failed");
        }
    }
}

fn paths(keys: impl IntoIterator<Item = String>) -> impl Iterator<Item = Path> {
    keys.into_iter().map(|k| Path::from(k.as_str()))
}

/// Moves the log start to `offset`, committing first, then deleting what
/// no longer holds live records.
pub(crate) async fn truncate_front(
    inner: &Arc<Inner>,
    part: &Arc<Partition>,
    epoch: i32,
    offset: i64,
) -> Result<(), LogError> {
    let Freed { segments, wal_keys } = inner.meta.truncate_front(&part.tp, epoch, offset).await?;
    {
        let mut st = part.lock();
        st.log_start = st.log_start.max(offset);
        st.segments.retain(|s| s.last_offset >= offset);
    }
    delete_keys(
        inner.store.as_ref(),
        paths(segments.into_iter().map(|s| s.key)),
    )
    .await;
    delete_keys(inner.store.as_ref(), paths(wal_keys)).await;
    Ok(())
}

/// Deletes whole sealed segments past retention.ms or retention.bytes.
pub(crate) async fn apply_retention(inner: &Arc<Inner>, part: &Arc<Partition>) {
    let now = inner.clock.now_ms();
    let (new_start, epoch) = {
        let st = part.lock();
        if st.closed || st.config.compact || st.segments.is_empty() {
            return;
        }
        let limits = RetentionLimits {
            ms: st.config.retention_ms,
            bytes: st.config.retention_bytes,
        };
        let gone = limits.segments_to_delete(&st.segments, st.mem_bytes as i64, now);
        if gone == 0 {
            return;
        }
        let new_start = st
            .segments
            .get(gone)
            .map(|n| n.base_offset)
            .or_else(|| st.mem.front().map(|b| b.base))
            .unwrap_or(st.hw);
        if new_start <= st.log_start {
            return;
        }
        (new_start, st.epoch)
    };
    match truncate_front(inner, part, epoch, new_start).await {
        Ok(()) => {
            tracing::info!(tp = %part.tp, log_start = new_start, "retention removed segments")
        }
        Err(e) => tracing::warn!(tp = %part.tp, error = %e, "retention failed"),
    }
}

/// A topic's retention.ms and retention.bytes (negative: no limit).
struct RetentionLimits {
    ms: i64,
    bytes: i64,
}

impl RetentionLimits {
    /// How many of the oldest sealed segments go, by Kafka's rules: a segment
    /// whose newest record is older than retention.ms, or one without which
    /// the log still holds at least retention.bytes. The unsealed tail counts
    /// towards the log's size, as Kafka's active segment does, but is never
    /// deleted. The size rule keeps the log at or above retention.bytes
    /// rather than below it, which is what a Kafka user has sized disks for.
    fn segments_to_delete(&self, segments: &[SegmentEntry], tail_bytes: i64, now: i64) -> usize {
        let mut total = segments.iter().map(|s| s.size_bytes as i64).sum::<i64>() + tail_bytes;
        let mut gone = 0;
        for s in segments {
            let size = s.size_bytes as i64;
            let too_old = self.ms >= 0
                && s.max_timestamp >= 0
                && now.saturating_sub(s.max_timestamp) > self.ms;
            let too_big = self.bytes >= 0 && total - size >= self.bytes;
            if !(too_old || too_big) {
                break;
            }
            total -= size;
            gone += 1;
        }
        gone
    }
}

/// ListOffsets for one partition; see `LogManager::list_offset`.
pub(crate) async fn list_offset(
    inner: &Arc<Inner>,
    part: &Arc<Partition>,
    timestamp: i64,
) -> Result<(i64, i64), LogError> {
    let (start, hw, segments, mem) = {
        let st = part.lock();
        let mem: Vec<_> = st.mem.iter().filter(|b| b.base < st.hw).cloned().collect();
        (st.log_start, st.hw, st.segments.clone(), mem)
    };
    match timestamp {
        -2 => return Ok((start, -1)),
        -1 => return Ok((hw, -1)),
        _ => {}
    }
    // Candidate batches in offset order: sealed segments are read lazily,
    // only the one whose max timestamp qualifies.
    let mut best: Option<(i64, i64)> = None;
    let mut consider = |batch: &[u8]| -> Result<bool, LogError> {
        let d = strata_format::decode_batch(batch)?;
        for r in d.records {
            if r.offset < start || r.offset >= hw {
                continue;
            }
            if timestamp == -3 {
                if best.is_none_or(|(_, t)| r.timestamp > t) {
                    best = Some((r.offset, r.timestamp));
                }
            } else if r.timestamp >= timestamp {
                best = Some((r.offset, r.timestamp));
                return Ok(true);
            }
        }
        Ok(false)
    };
    for s in segments.iter().filter(|s| s.last_offset >= start) {
        if timestamp != -3 && s.max_timestamp < timestamp {
            continue;
        }
        let mut offset = s.base_offset.max(start);
        while offset <= s.last_offset {
            let batches = inner.reader.read(s, offset, 1, 1 << 20).await?;
            if batches.is_empty() {
                break;
            }
            for b in &batches {
                if consider(b)? {
                    return Ok(best.unwrap_or((-1, -1)));
                }
                let h = strata_format::parse_header(b)?;
                offset = offset.max(h.last_offset() + 1);
            }
        }
    }
    for b in mem.iter().filter(|b| b.last >= start) {
        if timestamp != -3 && b.max_ts < timestamp {
            continue;
        }
        if consider(&b.data)? {
            break;
        }
    }
    Ok(best.unwrap_or((-1, -1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(base: i64, size: u64, max_timestamp: i64) -> SegmentEntry {
        SegmentEntry {
            base_offset: base,
            last_offset: base + 9,
            key: format!("{base}.parquet"),
            size_bytes: size,
            max_timestamp,
            producers: None,
        }
    }

    fn sized(sizes: &[u64]) -> Vec<SegmentEntry> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| segment(i as i64 * 10, size, 1_000))
            .collect()
    }

    const NO_TIME_LIMIT: i64 = -1;

    #[test]
    fn retention_bytes_keeps_at_least_the_limit_as_kafka_does() {
        let limits = RetentionLimits {
            ms: NO_TIME_LIMIT,
            bytes: 250,
        };
        // 400 + 50 of tail: without the first two the log holds 250, exactly the
        // limit; without the third it would hold 150, below it.
        let segs = sized(&[100, 100, 100, 100]);
        assert_eq!(limits.segments_to_delete(&segs, 50, 0), 2);
        // One byte more of limit and the second segment must stay too.
        let limits = RetentionLimits {
            ms: NO_TIME_LIMIT,
            bytes: 251,
        };
        assert_eq!(limits.segments_to_delete(&segs, 50, 0), 1);
    }

    #[test]
    fn a_tail_larger_than_retention_bytes_leaves_no_sealed_segment() {
        // Kafka deletes every inactive segment when the active one alone is over
        // the limit; the tail plays that part and is itself never deleted.
        let limits = RetentionLimits {
            ms: NO_TIME_LIMIT,
            bytes: 1_000,
        };
        let segs = sized(&[300, 300, 300]);
        assert_eq!(limits.segments_to_delete(&segs, 1_000, 0), 3);
        assert_eq!(limits.segments_to_delete(&segs, 999, 0), 2);
    }

    #[test]
    fn a_log_within_its_limits_loses_nothing() {
        let segs = sized(&[100, 100]);
        let unlimited = RetentionLimits {
            ms: NO_TIME_LIMIT,
            bytes: -1,
        };
        assert_eq!(unlimited.segments_to_delete(&segs, 1 << 40, i64::MAX), 0);
        let roomy = RetentionLimits {
            ms: 10_000,
            bytes: 10_000,
        };
        assert_eq!(roomy.segments_to_delete(&segs, 500, 5_000), 0);
        assert_eq!(roomy.segments_to_delete(&[], 50_000, 5_000), 0);
    }

    #[test]
    fn retention_ms_deletes_the_old_prefix_only() {
        let limits = RetentionLimits {
            ms: 1_000,
            bytes: -1,
        };
        // The third segment is old again (a producer's clock), but the second is
        // recent: deletion stops at the first segment to keep, as Kafka's does.
        let segs = vec![
            segment(0, 10, 100),
            segment(10, 10, 4_500),
            segment(20, 10, 100),
        ];
        assert_eq!(limits.segments_to_delete(&segs, 0, 5_000), 1);
        // A segment without timestamps (-1) is never too old.
        let segs = vec![segment(0, 10, -1), segment(10, 10, 100)];
        assert_eq!(limits.segments_to_delete(&segs, 0, 5_000), 0);
    }
}
