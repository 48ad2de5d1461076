//! Property tests where encoders meet decoders: batches and segments round trip, and no
//! input, however malformed, makes a decoder panic.

use bytes::Bytes;
use proptest::prelude::*;
use strata_format::{
    decode_batch, encode_batch, read_segment_bytes, split_batches, validate_batch, write_segment,
    BatchSpec, DecodedBatch, Record, SegmentInfo, SegmentWriteOptions,
};

fn bytes_opt() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from))
}

/// Timestamp delta, key, value, headers; offsets are filled in by `batches_strategy`.
type RecordBody = (
    i64,
    Option<Bytes>,
    Option<Bytes>,
    Vec<(String, Option<Bytes>)>,
);

fn record_body() -> impl Strategy<Value = RecordBody> {
    (
        -1_000_000i64..1_000_000,
        bytes_opt(),
        bytes_opt(),
        proptest::collection::vec((".{0,8}", bytes_opt()), 0..4),
    )
}

fn spec_strategy() -> impl Strategy<Value = BatchSpec> {
    (
        any::<i32>(),
        any::<i16>(),
        any::<i64>(),
        any::<i16>(),
        any::<i32>(),
    )
        .prop_map(
            |(epoch, attributes, producer_id, producer_epoch, base_sequence)| BatchSpec {
                base_offset: 0,
                partition_leader_epoch: epoch,
                // LogAppendTime rewrites timestamps on decode, so keep the timestamp-type bit off
                // here; it has its own unit test.
                attributes: attributes & !0x0f,
                producer_id,
                producer_epoch,
                base_sequence,
            },
        )
}

/// A sequence of batches with contiguous offsets from `first`.
fn batches_strategy(first: i64) -> impl Strategy<Value = Vec<(BatchSpec, Vec<Record>)>> {
    proptest::collection::vec(
        (
            spec_strategy(),
            1_600_000_000_000i64..1_800_000_000_000,
            proptest::collection::vec(record_body(), 1..8),
        ),
        1..6,
    )
    .prop_map(move |raw| {
        let mut next = first;
        raw.into_iter()
            .map(|(mut spec, base_ts, bodies)| {
                spec.base_offset = next;
                let records = bodies
                    .into_iter()
                    .map(|(ts_delta, key, value, headers)| {
                        let r = Record {
                            offset: next,
                            timestamp: base_ts + ts_delta,
                            key,
                            value,
                            headers,
                        };
                        next += 1;
                        r
                    })
                    .collect();
                (spec, records)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batches_round_trip(batches in batches_strategy(1_000)) {
        let encoded: Vec<Bytes> = batches.iter().map(|(s, r)| encode_batch(s, r)).collect();
        let all: Vec<u8> = encoded.concat();
        let ranges = split_batches(&all).unwrap();
        prop_assert_eq!(ranges.len(), batches.len());
        for (range, (spec, records)) in ranges.into_iter().zip(&batches) {
            let decoded = decode_batch(&all[range]).unwrap();
            prop_assert_eq!(&decoded.records, records);
            prop_assert_eq!(BatchSpec::from_header(&decoded.header), *spec);
        }
    }

    #[test]
    fn segments_round_trip(
        batches in batches_strategy(500),
        row_group_rows in 1usize..12,
        from_pick in 0usize..64,
    ) {
        let decoded: Vec<DecodedBatch> = batches
            .iter()
            .map(|(s, r)| decode_batch(&encode_batch(s, r)).unwrap())
            .collect();
        let info = SegmentInfo { topic: "t".into(), topic_id: "id".into(), partition: 0 };
        let opts = SegmentWriteOptions { row_group_rows, ..Default::default() };
        let file = write_segment(&info, &decoded, &opts).unwrap();
        let total: i64 = batches.iter().map(|(_, r)| r.len() as i64).sum();
        // From before the first offset up to one past the last.
        let from = 499 + (from_pick as i64 % (total + 2));
        let out = read_segment_bytes(file, from).unwrap();
        let expected: Vec<_> = batches
            .iter()
            .filter(|(_, r)| r.last().unwrap().offset >= from)
            .collect();
        prop_assert_eq!(out.len(), expected.len());
        for (bytes, (spec, records)) in out.iter().zip(expected) {
            validate_batch(bytes).unwrap();
            let got = decode_batch(bytes).unwrap();
            prop_assert_eq!(&got.records, records);
            prop_assert_eq!(BatchSpec::from_header(&got.header), *spec);
        }
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = split_batches(&data);
        let _ = decode_batch(&data);
        let _ = validate_batch(&data);
        let _ = strata_format::parse_header(&data);
    }

    /// Damage inside a valid batch with the CRC recomputed, so the decoder's record
    /// parsing (not just the CRC check) sees the garbage.
    #[test]
    fn damaged_batches_never_panic(
        batches in batches_strategy(0),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        codec in 0i16..8,
    ) {
        let (spec, records) = &batches[0];
        let mut batch = encode_batch(spec, records).to_vec();
        for (at, byte) in edits {
            let at = 21 + at % (batch.len() - 21);
            batch[at] = byte;
        }
        // Sometimes claim a codec, so decompressors see garbage too.
        batch[22] = (batch[22] & !0x07) | codec as u8;
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let _ = split_batches(&batch);
        let _ = decode_batch(&batch);
    }
}
