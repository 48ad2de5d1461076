use super::*;

const PID: i64 = 7;

fn ids(epoch: i16, first: i32, count: i32) -> BatchIds {
    BatchIds {
        producer_id: PID,
        epoch,
        first_seq: first,
        last_seq: seq_add(first, count - 1),
    }
}

/// Checks and, when accepted, appends at `*next`, as a partition would.
fn append(
    st: &mut ProducerState,
    ids: BatchIds,
    next: &mut i64,
    now: i64,
) -> Result<Verdict, LogError> {
    let mut pending = st.pending();
    let verdict = pending.check(&ids)?;
    if verdict == Verdict::Append {
        let span = i64::from(ids.last_seq) - i64::from(ids.first_seq);
        let count = span.rem_euclid(i64::from(i32::MAX) + 1) + 1;
        let batch = ProducerBatch {
            first_seq: ids.first_seq,
            last_seq: ids.last_seq,
            base_offset: *next,
            last_offset: *next + count - 1,
            timestamp: now,
        };
        pending.record(&ids, batch, now);
        *next += count;
    }
    let changes = pending.into_changes();
    st.commit(changes);
    Ok(verdict)
}

fn is_out_of_order(r: Result<Verdict, LogError>) -> bool {
    matches!(r, Err(LogError::OutOfOrderSequence { .. }))
}

#[test]
fn in_order_batches_are_appended_and_a_retry_is_a_duplicate() {
    let mut st = ProducerState::new(true);
    let mut next = 0;
    assert_eq!(
        append(&mut st, ids(0, 0, 10), &mut next, 1).unwrap(),
        Verdict::Append
    );
    assert_eq!(
        append(&mut st, ids(0, 10, 5), &mut next, 2).unwrap(),
        Verdict::Append
    );
    assert_eq!(next, 15);
    match append(&mut st, ids(0, 0, 10), &mut next, 3).unwrap() {
        Verdict::Duplicate(b) => {
            assert_eq!((b.base_offset, b.last_offset, b.timestamp), (0, 9, 1));
        }
        v => panic!("expected a duplicate, got {v:?}"),
    }
    assert_eq!(next, 15, "a duplicate takes no offsets");
}

#[test]
fn a_gap_or_an_overlap_that_is_no_retry_is_out_of_order() {
    let mut st = ProducerState::new(true);
    let mut next = 0;
    append(&mut st, ids(0, 0, 10), &mut next, 1).unwrap();
    assert!(is_out_of_order(append(
        &mut st,
        ids(0, 11, 1),
        &mut next,
        1
    )));
    // Same first sequence as a cached batch but another length.
    assert!(is_out_of_order(append(&mut st, ids(0, 0, 5), &mut next, 1)));
    assert_eq!(next, 10);
    assert_eq!(
        append(&mut st, ids(0, 10, 1), &mut next, 1).unwrap(),
        Verdict::Append
    );
}

#[test]
fn an_older_epoch_is_refused_and_a_newer_one_restarts_at_zero() {
    let mut st = ProducerState::new(true);
    let mut next = 0;
    append(&mut st, ids(3, 0, 4), &mut next, 1).unwrap();
    assert!(matches!(
        append(&mut st, ids(2, 4, 1), &mut next, 1),
        Err(LogError::InvalidProducerEpoch {
            epoch: 2,
            current: 3,
            ..
        })
    ));
    assert!(is_out_of_order(append(&mut st, ids(4, 4, 1), &mut next, 1)));
    assert_eq!(
        append(&mut st, ids(4, 0, 2), &mut next, 1).unwrap(),
        Verdict::Append
    );
    // The old epoch's batches can no longer be retried.
    assert!(matches!(
        append(&mut st, ids(3, 0, 4), &mut next, 1),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(
        append(&mut st, ids(4, 2, 1), &mut next, 1).unwrap(),
        Verdict::Append
    );
}

#[test]
fn sequences_wrap_from_max_to_zero() {
    let mut st = ProducerState::new(false);
    let mut next = 0;
    // Unknown producer on an incomplete state: any first sequence.
    append(&mut st, ids(0, i32::MAX - 2, 3), &mut next, 1).unwrap();
    assert_eq!(
        append(&mut st, ids(0, 0, 2), &mut next, 1).unwrap(),
        Verdict::Append
    );
    // A batch spanning the wrap.
    let mut st = ProducerState::new(false);
    append(&mut st, ids(0, i32::MAX - 5, 3), &mut next, 1).unwrap();
    let spanning = ids(0, i32::MAX - 2, 5);
    assert_eq!(spanning.last_seq, 1);
    assert_eq!(
        append(&mut st, spanning, &mut next, 1).unwrap(),
        Verdict::Append
    );
    assert!(matches!(
        append(&mut st, spanning, &mut next, 1).unwrap(),
        Verdict::Duplicate(_)
    ));
    assert_eq!(
        append(&mut st, ids(0, 2, 1), &mut next, 1).unwrap(),
        Verdict::Append
    );
}

#[test]
fn only_the_last_five_batches_are_recognised_as_retries() {
    let mut st = ProducerState::new(true);
    let mut next = 0;
    for i in 0..7 {
        append(&mut st, ids(0, i * 2, 2), &mut next, 1).unwrap();
    }
    // Batches 2..=6 are kept; 0 and 1 fell out of the window.
    for i in 2..7 {
        let v = append(&mut st, ids(0, i * 2, 2), &mut next, 1).unwrap();
        assert_eq!(
            v,
            Verdict::Duplicate(ProducerBatch {
                first_seq: i * 2,
                last_seq: i * 2 + 1,
                base_offset: i64::from(i) * 2,
                last_offset: i64::from(i) * 2 + 1,
                timestamp: 1,
            })
        );
    }
    assert!(is_out_of_order(append(&mut st, ids(0, 2, 2), &mut next, 1)));
    assert_eq!(next, 14);
}

#[test]
fn an_unknown_producer_must_start_at_zero_only_when_nothing_was_forgotten() {
    let mut complete = ProducerState::new(true);
    let mut next = 0;
    assert!(is_out_of_order(append(
        &mut complete,
        ids(0, 5, 1),
        &mut next,
        1
    )));
    assert!(complete.is_empty(), "a refused batch leaves no state");
    let mut incomplete = ProducerState::new(false);
    assert_eq!(
        append(&mut incomplete, ids(0, 5, 1), &mut next, 1).unwrap(),
        Verdict::Append
    );
    assert_eq!(
        append(&mut incomplete, ids(0, 6, 1), &mut next, 1).unwrap(),
        Verdict::Append
    );
}

#[test]
fn a_request_is_checked_batch_after_batch_and_kept_only_when_committed() {
    let mut st = ProducerState::new(true);
    let mut pending = st.pending();
    let a = ids(0, 0, 3);
    assert_eq!(pending.check(&a).unwrap(), Verdict::Append);
    let batch = |first, last, base| ProducerBatch {
        first_seq: first,
        last_seq: last,
        base_offset: base,
        last_offset: base + i64::from(last - first),
        timestamp: 0,
    };
    pending.record(&a, batch(0, 2, 0), 1);
    // The second batch of the same request sees the first.
    assert_eq!(pending.check(&ids(0, 3, 1)).unwrap(), Verdict::Append);
    assert!(pending.check(&ids(0, 0, 1)).is_err());
    drop(pending);
    assert!(st.is_empty(), "nothing is kept before commit");
    let mut pending = st.pending();
    pending.record(&a, batch(0, 2, 0), 1);
    let changes = pending.into_changes();
    st.commit(changes);
    assert_eq!(st.len(), 1);
}

#[test]
fn expiration_forgets_idle_producers_and_marks_the_state_incomplete() {
    let mut st = ProducerState::new(true);
    let mut next = 0;
    append(&mut st, ids(0, 0, 1), &mut next, 1_000).unwrap();
    let other = BatchIds {
        producer_id: 8,
        ..ids(0, 0, 1)
    };
    let mut pending = st.pending();
    pending.record(
        &other,
        ProducerBatch {
            first_seq: 0,
            last_seq: 0,
            base_offset: 1,
            last_offset: 1,
            timestamp: 0,
        },
        5_000,
    );
    let changes = pending.into_changes();
    st.commit(changes);
    assert_eq!(st.expire(5_999, 5_000), 0);
    assert!(st.is_complete());
    assert_eq!(st.expire(6_000, 5_000), 1);
    assert_eq!(st.len(), 1);
    assert!(!st.is_complete());
    // The forgotten producer may now come back mid-sequence.
    assert_eq!(
        append(&mut st, ids(0, 1, 1), &mut next, 7_000).unwrap(),
        Verdict::Append
    );
}

#[test]
fn snapshots_round_trip_and_replay_rebuilds_the_appended_state() {
    let mut live = ProducerState::new(true);
    let mut next = 0;
    for i in 0..8 {
        append(&mut live, ids(1, i * 3, 3), &mut next, 100 + i64::from(i)).unwrap();
    }
    let snap = live.snapshot();
    assert_eq!(snap.producers[0].batches.len(), BATCHES_KEPT);
    assert_eq!(ProducerState::from_snapshot(Some(&snap)), live);
    assert_eq!(
        ProducerState::from_snapshot(None),
        ProducerState::new(false)
    );

    let mut replayed = ProducerState::new(true);
    let mut offset = 0;
    for i in 0..8 {
        let b = ids(1, i * 3, 3);
        let batch = ProducerBatch {
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            base_offset: offset,
            last_offset: offset + 2,
            timestamp: 100 + i64::from(i),
        };
        replayed.replay(&b, batch, 100 + i64::from(i));
        offset += 3;
    }
    assert_eq!(replayed, live);
}

#[test]
fn replay_of_stored_batches_reads_the_header() {
    use strata_format::{encode_batch, BatchSpec, Record};
    let spec = BatchSpec {
        base_offset: 40,
        partition_leader_epoch: 0,
        attributes: 0,
        producer_id: PID,
        producer_epoch: 2,
        base_sequence: 9,
    };
    let records: Vec<Record> = (0..4)
        .map(|i| Record {
            offset: 40 + i,
            timestamp: 500 + i,
            key: None,
            value: None,
            headers: Vec::new(),
        })
        .collect();
    let mut st = ProducerState::new(true);
    st.replay_batch(&encode_batch(&spec, &records), 1);
    let snap = st.snapshot();
    assert_eq!(snap.producers[0].epoch, 2);
    assert_eq!(
        snap.producers[0].batches,
        vec![ProducerBatch {
            first_seq: 9,
            last_seq: 12,
            base_offset: 40,
            last_offset: 43,
            timestamp: 503
        }]
    );
    // Batches without a producer id leave no state.
    let plain = BatchSpec {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        ..spec
    };
    let mut st = ProducerState::new(true);
    st.replay_batch(&encode_batch(&plain, &records), 1);
    assert!(st.is_empty());
}
