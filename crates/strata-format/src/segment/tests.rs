use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

use super::*;
use crate::batch::tests::{records, spec};
use crate::records::{decode_batch, encode_batch, DecodedBatch};
use crate::FormatError;

fn info() -> SegmentInfo {
    SegmentInfo {
        topic: "orders".into(),
        topic_id: "6f1c".into(),
        partition: 3,
    }
}

/// Batches of the given sizes, contiguous from `base`.
fn batches(base: i64, sizes: &[i64]) -> Vec<DecodedBatch> {
    let mut next = base;
    sizes
        .iter()
        .map(|&n| {
            let bytes = encode_batch(&spec(next), &records(next, n));
            next += n;
            decode_batch(&bytes).unwrap()
        })
        .collect()
}

/// The records of every batch a whole segment replays, batch by batch.
fn replayed_records(file: Bytes) -> Vec<Vec<crate::records::Record>> {
    let served = read_segment_bytes(file, 0).unwrap();
    served
        .iter()
        .map(|b| decode_batch(b).unwrap().records)
        .collect()
}

fn records_of(input: &[DecodedBatch]) -> Vec<Vec<crate::records::Record>> {
    input.iter().map(|b| b.records.clone()).collect()
}

fn opts(rows: usize) -> SegmentWriteOptions {
    SegmentWriteOptions {
        row_group_rows: rows,
        ..Default::default()
    }
}

#[test]
fn metadata_schema_and_page_index() {
    let input = batches(100, &[3, 4, 5]);
    let file = write_segment(&info(), &input, &opts(5)).unwrap();
    let options = ArrowReaderOptions::new().with_page_index(true);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
    assert_eq!(builder.schema().fields(), segment_schema().fields());
    let meta = builder.metadata();
    let kv: std::collections::HashMap<_, _> = meta
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(kv[META_TOPIC], "orders");
    assert_eq!(kv[META_TOPIC_ID], "6f1c");
    assert_eq!(kv[META_PARTITION], "3");
    assert_eq!(kv[META_FIRST_OFFSET], "100");
    assert_eq!(kv[META_LAST_OFFSET], "111");
    assert_eq!(kv[META_FORMAT_VERSION], "1");
    // Batches of 3, 4 and 5 rows with row groups of 5: [3+4], [5].
    assert_eq!(meta.num_row_groups(), 2);
    assert!(meta.column_index().is_some(), "column index written");
    assert!(meta.offset_index().is_some(), "offset index written");
    let rg = meta.row_group(0);
    assert!(matches!(
        rg.column(0).compression(),
        parquet::basic::Compression::ZSTD(_)
    ));
    assert!(rg.column(0).statistics().is_some());
    // The Parquet schema is the one Arrow's writer derives (what DuckDB and Spark
    // read); values carry no statistics.
    let expected = parquet::arrow::ArrowSchemaConverter::new()
        .convert(&segment_schema())
        .unwrap();
    assert_eq!(
        meta.file_metadata().schema_descr().root_schema(),
        expected.root_schema()
    );
    let value = super::read::leaf_column(meta, "value").unwrap();
    assert!(rg.column(value).statistics().is_none());
    // What an offset seek and a query on time need keeps its bounds; the fields a batch
    // repeats on every row do not, and they and the counters are delta-encoded.
    let column = |name| rg.column(super::read::leaf_column(meta, name).unwrap());
    for name in ["offset", "timestamp", "batch_base_offset", "key"] {
        assert!(column(name).statistics().is_some(), "{name} has statistics");
    }
    for name in [
        "batch_attributes",
        "producer_id",
        "producer_epoch",
        "base_sequence",
    ] {
        assert!(column(name).statistics().is_none(), "{name} has none");
    }
    for name in ["offset", "timestamp", "batch_base_offset", "producer_id"] {
        let encodings = column(name).encodings().to_vec();
        assert!(
            encodings.contains(&parquet::basic::Encoding::DELTA_BINARY_PACKED),
            "{name}: {encodings:?}"
        );
    }
}

/// A segment sealed before the counters and batch fields were delta-encoded (dictionary
/// and plain pages, statistics on every batch field), written at 1240d6c by
/// `write_segment(&info(), &batches(100, &[4, 6, 2]), &opts(5))`.
const DICTIONARY_ENCODED_SEGMENT: &[u8] =
    include_bytes!("../../tests/data/segment-dictionary-encoded.parquet");

#[test]
fn segments_sealed_before_delta_encoding_replay_the_same_batches() {
    let input = batches(100, &[4, 6, 2]);
    let old = Bytes::from_static(DICTIONARY_ENCODED_SEGMENT);
    let new = write_segment(&info(), &input, &opts(5)).unwrap();
    assert_ne!(old, new, "the fixture is in the earlier encoding");
    assert_eq!(replayed_records(old.clone()), records_of(&input));
    for from in [0, 100, 104, 107, 111] {
        assert_eq!(
            read_segment_bytes(old.clone(), from).unwrap(),
            read_segment_bytes(new.clone(), from).unwrap(),
            "from offset {from}"
        );
    }
    let meta = ParquetRecordBatchReaderBuilder::try_new(old).unwrap();
    assert_eq!(row_groups_from_offset(meta.metadata(), 107), vec![0, 1]);
    assert_eq!(row_groups_from_offset(meta.metadata(), 110), vec![1]);
}

#[test]
fn row_group_selection_by_offset() {
    // Batches: 100..=103, 104..=109, 110..=111; row groups of 5 rows close at
    // batch ends: rg0 = 100..=109 (two batches), rg1 = 110..=111.
    let file = write_segment(&info(), &batches(100, &[4, 6, 2]), &opts(5)).unwrap();
    let meta = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .metadata()
        .clone();
    assert_eq!(row_groups_from_offset(&meta, 0), vec![0, 1]);
    assert_eq!(row_groups_from_offset(&meta, 107), vec![0, 1]);
    assert_eq!(row_groups_from_offset(&meta, 110), vec![1]);
    assert_eq!(row_groups_from_offset(&meta, 112), Vec::<usize>::new());
}

#[test]
fn reads_whole_batches_from_offset() {
    let input = batches(100, &[4, 6, 2]);
    let file = write_segment(&info(), &input, &opts(5)).unwrap();
    let out = read_segment_bytes(file.clone(), 107).unwrap();
    let decoded: Vec<_> = out.iter().map(|b| decode_batch(b).unwrap()).collect();
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[0].records, input[1].records);
    assert_eq!(decoded[1].records, input[2].records);
    assert!(read_segment_bytes(file, 500).unwrap().is_empty());
}

#[test]
fn compression_bits_cleared_but_other_attributes_kept() {
    let mut input = batches(0, &[2]);
    input[0].header.attributes = 0x10 | 0x04; // transactional, was zstd
    let file = write_segment(&info(), &input, &opts(10)).unwrap();
    let out = read_segment_bytes(file, 0).unwrap();
    let h = crate::validate_batch(&out[0]).unwrap();
    assert_eq!(h.attributes, 0x10);
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (42, 3, 11)
    );
    assert_eq!(h.partition_leader_epoch, 7);
}

#[test]
fn rejects_unsorted_and_empty() {
    let mut input = batches(0, &[2, 2]);
    input.swap(0, 1);
    let err = write_segment(&info(), &input, &opts(10)).unwrap_err();
    assert!(matches!(err, FormatError::InvalidSegment(_)), "{err}");
    let err = write_segment(&info(), &[], &opts(10)).unwrap_err();
    assert!(matches!(err, FormatError::InvalidSegment(_)), "{err}");
}

#[test]
fn not_a_segment_is_an_error() {
    assert!(read_segment_bytes(Bytes::from_static(b"PAR1 nope"), 0).is_err());
}

#[test]
fn row_groups_hold_whole_batches_so_served_batches_are_the_originals() {
    let input = batches(0, &[300, 300, 7, 500, 1, 300]);
    let file = write_segment(&info(), &input, &opts(200)).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap();
    let meta = builder.metadata();
    let sizes: Vec<i64> = (0..meta.num_row_groups())
        .map(|i| meta.row_group(i).num_rows())
        .collect();
    assert_eq!(
        sizes,
        vec![300, 300, 507, 301],
        "row groups cut at batch ends"
    );
    // Every served batch validates and equals an original batch's records.
    let served = read_segment_bytes(file, 0).unwrap();
    assert_eq!(served.len(), input.len());
    for (b, orig) in served.iter().zip(&input) {
        let h = crate::validate_batch(b).expect("served batch is valid");
        assert_eq!(h.base_offset, orig.header.base_offset);
        assert_eq!(decode_batch(b).unwrap().records, orig.records);
    }
}

/// Batches of the given sizes, contiguous from `base`, as encoded bytes; a size of 0 is
/// a batch without records (as compaction can leave behind) at the next offset.
fn encoded(base: i64, sizes: &[i64]) -> Vec<Bytes> {
    let mut next = base;
    sizes
        .iter()
        .map(|&n| {
            let bytes = encode_batch(&spec(next), &records(next, n));
            next += n;
            bytes
        })
        .collect()
}

/// Records of row group `rg` as a reader gets them back from the file, batch by batch.
fn row_group_batches(file: &Bytes, rg: usize) -> Vec<(i64, Vec<crate::records::Record>)> {
    let rbs = ParquetRecordBatchReaderBuilder::try_new(file.clone())
        .unwrap()
        .with_row_groups(vec![rg])
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    arrow_to_batches(&rbs)
        .unwrap()
        .into_iter()
        .map(|(first, last, b)| {
            let d = decode_batch(&b).unwrap();
            assert_eq!(d.records.first().map(|r| r.offset), Some(first));
            assert_eq!(d.records.last().map(|r| r.offset), Some(last));
            (d.header.base_offset, d.records)
        })
        .collect()
}

fn check_grouping(raw: &[Bytes], opts: &SegmentWriteOptions) -> Vec<Vec<usize>> {
    let decoded = raw.iter().map(|b| decode_batch(b));
    let (file, groups) = write_segment_grouped(&info(), decoded, opts).unwrap();

    // One entry per row group of the file, as its footer says.
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .unwrap();
    assert_eq!(
        groups.len(),
        meta.num_row_groups(),
        "one entry per row group"
    );

    // Every input batch with records appears exactly once, in input order; empty ones never.
    let non_empty: Vec<usize> = (0..raw.len())
        .filter(|&i| !decode_batch(&raw[i]).unwrap().records.is_empty())
        .collect();
    let listed: Vec<usize> = groups.iter().flatten().copied().collect();
    assert_eq!(listed, non_empty, "positions listed once each, in order");
    assert!(
        groups.iter().all(|g| !g.is_empty()),
        "no empty row group entry"
    );

    // The input batches of group i, concatenated, are exactly row group i's contents.
    for (rg, group) in groups.iter().enumerate() {
        let mut concat = Vec::new();
        for &i in group {
            concat.extend_from_slice(&raw[i]);
        }
        let from_input: Vec<(i64, Vec<crate::records::Record>)> =
            crate::batch::split_batches(&concat)
                .unwrap()
                .into_iter()
                .map(|r| {
                    let d = decode_batch(&concat[r]).unwrap();
                    (d.header.base_offset, d.records)
                })
                .collect();
        let from_file = row_group_batches(&file, rg);
        assert_eq!(
            meta.row_group(rg).num_rows() as usize,
            from_input.iter().map(|(_, r)| r.len()).sum::<usize>(),
            "row group {rg} row count"
        );
        let offsets = |b: &[(i64, Vec<crate::records::Record>)]| -> Vec<i64> {
            b.iter()
                .flat_map(|(_, r)| r.iter().map(|r| r.offset))
                .collect()
        };
        let values = |b: &[(i64, Vec<crate::records::Record>)]| -> Vec<Option<Bytes>> {
            b.iter()
                .flat_map(|(_, r)| r.iter().map(|r| r.value.clone()))
                .collect()
        };
        assert_eq!(offsets(&from_file), offsets(&from_input), "rg {rg} offsets");
        assert_eq!(values(&from_file), values(&from_input), "rg {rg} values");
        // Same batch boundaries and whole records (keys, timestamps, headers) too.
        assert_eq!(from_file, from_input, "rg {rg} batches");
        // Re-encoding what the file holds gives back the cached bytes themselves.
        let mut reencoded = Vec::new();
        for (base, records) in &from_file {
            reencoded.extend_from_slice(&encode_batch(&spec(*base), records));
        }
        assert_eq!(reencoded, concat, "rg {rg} bytes");
    }
    groups
}

#[test]
fn grouped_write_names_the_input_batches_of_each_row_group() {
    // Empty batches first, in the middle, in a run and last.
    let raw = encoded(100, &[0, 3, 0, 4, 5, 0, 0, 2, 6, 1, 0]);
    let groups = check_grouping(&raw, &opts(5));
    // Row groups of 5 rows close at batch ends: [3+4], [5], [2+6], [1].
    assert_eq!(groups, vec![vec![1, 3], vec![4], vec![7, 8], vec![9]]);
}

#[test]
fn grouped_write_with_one_row_group_and_uncompressed_pages() {
    let raw = encoded(0, &[2, 0, 7, 1]);
    let opts = SegmentWriteOptions {
        row_group_rows: 1000,
        zstd_level: None,
    };
    assert_eq!(check_grouping(&raw, &opts), vec![vec![0, 2, 3]]);
}

#[test]
fn grouped_write_with_a_row_group_per_batch() {
    let raw = encoded(7, &[1, 1, 0, 300, 1, 0]);
    let groups = check_grouping(&raw, &opts(1));
    assert_eq!(groups, vec![vec![0], vec![1], vec![3], vec![4]]);
}

#[test]
fn grouped_write_returns_the_same_file_as_write_segment() {
    let raw = encoded(0, &[3, 0, 4, 5]);
    let decoded: Vec<DecodedBatch> = raw.iter().map(|b| decode_batch(b).unwrap()).collect();
    let plain = write_segment(&info(), &decoded, &opts(5)).unwrap();
    let (grouped, _) =
        write_segment_grouped(&info(), decoded.iter().cloned().map(Ok), &opts(5)).unwrap();
    assert_eq!(plain, grouped);
}

#[test]
fn grouped_write_of_only_empty_batches_is_refused() {
    let raw = encoded(0, &[0, 0]);
    let err =
        write_segment_grouped(&info(), raw.iter().map(|b| decode_batch(b)), &opts(5)).unwrap_err();
    assert!(matches!(err, FormatError::InvalidSegment(_)), "{err}");
}

/// Batches of `n` records each whose values are `value(offset)`.
fn batches_of(sizes: &[i64], value: impl Fn(i64) -> Vec<u8>) -> Vec<DecodedBatch> {
    let mut input = batches(0, sizes);
    for r in input.iter_mut().flat_map(|b| b.records.iter_mut()) {
        r.value = Some(Bytes::from(value(r.offset)));
    }
    input
}

/// `batches` as a reader of their segment serves them: re-encoded, uncompressed.
fn reencoded(batches: &[DecodedBatch]) -> Vec<Bytes> {
    batches
        .iter()
        .map(|b| {
            encode_batch(
                &crate::records::BatchSpec::from_header(&b.header),
                &b.records,
            )
        })
        .collect()
}

/// The codec of every column chunk named `name`, one per row group (a file does not
/// record zstd's level).
fn codecs(file: Bytes, name: &str) -> Vec<&'static str> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let meta = builder.metadata();
    let leaf = read::leaf_column(meta, name).unwrap();
    (0..meta.num_row_groups())
        .map(|rg| match meta.row_group(rg).column(leaf).compression() {
            parquet::basic::Compression::ZSTD(_) => "zstd",
            parquet::basic::Compression::UNCOMPRESSED => "none",
            _ => "other",
        })
        .collect()
}

fn noise(seed: i64, len: usize) -> Vec<u8> {
    let mut x = seed as u64 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn values_that_do_not_compress_are_stored_uncompressed() {
    let input = batches_of(&[40, 40, 40], |offset| noise(offset + 1, 900));
    let file = write_segment(&info(), &input, &opts(50)).unwrap();
    assert_eq!(codecs(file.clone(), "value"), ["none"; 2]);
    // Offsets and keys still compress.
    assert_eq!(codecs(file.clone(), "offset"), ["zstd"; 2]);
    assert_eq!(codecs(file.clone(), "key"), ["zstd"; 2]);
    assert_eq!(read_segment_bytes(file, 0).unwrap(), reencoded(&input));
}

/// The codec of every column chunk whose path starts with `prefix`, by path, for the
/// first row group.
fn codecs_under(file: Bytes, prefix: &str) -> Vec<(String, &'static str)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let rg = builder.metadata().row_group(0);
    rg.columns()
        .iter()
        .filter(|c| c.column_path().parts()[0] == prefix)
        .map(|c| {
            let codec = match c.compression() {
                parquet::basic::Compression::ZSTD(_) => "zstd",
                parquet::basic::Compression::UNCOMPRESSED => "none",
                _ => "other",
            };
            (c.column_path().string(), codec)
        })
        .collect()
}

#[test]
fn columns_with_next_to_nothing_in_them_are_not_compressed() {
    let mut input = batches_of(&[40, 40, 40], |offset| noise(offset + 1, 100));
    for r in input.iter_mut().flat_map(|b| b.records.iter_mut()) {
        r.headers.clear();
    }
    let file = write_segment(&info(), &input, &opts(50)).unwrap();
    for column in [
        "batch_attributes",
        "producer_id",
        "producer_epoch",
        "partition_leader_epoch",
        "batch_base_offset",
        "base_sequence",
    ] {
        assert_eq!(codecs(file.clone(), column), ["none"; 2], "{column}");
    }
    assert_eq!(
        codecs_under(file.clone(), "headers"),
        [
            ("headers.list.item.key".to_string(), "none"),
            ("headers.list.item.value".to_string(), "none")
        ]
    );
    assert_eq!(codecs(file.clone(), "timestamp"), ["zstd"; 2]);

    // One record per batch: base offsets and sequences are as many as the rows.
    let input = batches_of(&[1; 60], |offset| noise(offset + 1, 100));
    let file = write_segment(&info(), &input, &opts(25)).unwrap();
    assert_eq!(codecs(file.clone(), "batch_base_offset"), ["zstd"; 3]);
    assert_eq!(codecs(file.clone(), "base_sequence"), ["zstd"; 3]);
    assert_eq!(codecs(file.clone(), "producer_id"), ["none"; 3]);

    // Records with headers keep them compressed.
    let mut input = batches_of(&[40, 40], |offset| noise(offset + 1, 100));
    for r in input.iter_mut().flat_map(|b| b.records.iter_mut()) {
        r.headers = vec![(
            "trace".into(),
            Some(Bytes::from(format!("id-{}", r.offset))),
        )];
    }
    let file = write_segment(&info(), &input, &opts(50)).unwrap();
    assert!(codecs_under(file.clone(), "headers")
        .iter()
        .all(|(_, codec)| *codec == "zstd"));
    assert_eq!(read_segment_bytes(file, 0).unwrap(), reencoded(&input));
}

#[test]
fn values_that_compress_are_stored_with_zstd() {
    let event = |offset: i64| {
        format!(
            r#"{{"user":{},"event":"page_view","url":"/products/{}"}}"#,
            offset % 7,
            offset % 13
        )
        .repeat(10)
        .into_bytes()
    };
    let input = batches_of(&[40, 40, 40], event);
    let file = write_segment(&info(), &input, &opts(50)).unwrap();
    assert_eq!(codecs(file.clone(), "value"), ["zstd"; 2]);
    let value_bytes: usize = input
        .iter()
        .flat_map(|b| &b.records)
        .map(|r| r.value.as_ref().unwrap().len())
        .sum();
    assert!(
        file.len() < value_bytes / 4,
        "{} bytes for {value_bytes}",
        file.len()
    );
}

#[test]
fn without_a_zstd_level_every_column_is_uncompressed() {
    let event = |offset: i64| format!("event {}", offset % 3).repeat(50).into_bytes();
    let input = batches_of(&[10, 10], event);
    let opts = SegmentWriteOptions {
        row_group_rows: 100,
        zstd_level: None,
    };
    let file = write_segment(&info(), &input, &opts).unwrap();
    assert_eq!(codecs(file.clone(), "value"), ["none"]);
    assert_eq!(codecs(file, "offset"), ["none"]);
}

/// Every batch of `file` as `arrow_to_batches` rebuilds it from the reader `meta` sets up.
fn rebuilt(file: &Bytes, meta: parquet::arrow::arrow_reader::ArrowReaderMetadata) -> Vec<Bytes> {
    let rbs = ParquetRecordBatchReaderBuilder::new_with_metadata(file.clone(), meta)
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    arrow_to_batches(&rbs)
        .unwrap()
        .into_iter()
        .map(|(_, _, b)| b)
        .collect()
}

#[test]
fn value_views_rebuild_the_same_batches_as_copied_values() {
    use arrow_schema::DataType;
    use parquet::arrow::arrow_reader::ArrowReaderMetadata;

    // Null, empty, inline (≤ 12 bytes in a view) and out-of-line keys and values, in
    // both an uncompressed and a zstd value column.
    // Values are disjoint stretches of one random stream, so they do not compress.
    let stream = noise(0x5eed_1234_abcd, 90 * 1000);
    let mut input = batches_of(&[30, 30, 30], |offset| {
        let at = offset as usize * 1000;
        stream[at..at + 300 + offset as usize * 7].to_vec()
    });
    for r in input.iter_mut().flat_map(|b| b.records.iter_mut()) {
        match r.offset % 5 {
            0 => r.value = None,
            1 => r.key = None,
            2 => r.key = Some(Bytes::from(vec![b'k'; 40])),
            3 => r.value = Some(Bytes::new()),
            _ => {}
        }
    }
    let json = |offset: i64| format!("{{\"n\":{}}}", offset % 4).repeat(20).into_bytes();
    for (file, codec) in [
        (write_segment(&info(), &input, &opts(40)).unwrap(), "none"),
        (
            write_segment(&info(), &batches_of(&[25, 25], json), &opts(40)).unwrap(),
            "zstd",
        ),
    ] {
        assert_eq!(codecs(file.clone(), "value")[0], codec);
        let plain = ArrowReaderMetadata::load(&file, Default::default()).unwrap();
        let views = with_value_views(plain.clone()).unwrap();
        for name in ["key", "value"] {
            let field = views.schema().field_with_name(name).unwrap().clone();
            assert_eq!(field.data_type(), &DataType::BinaryView, "{name}");
            assert!(field.is_nullable(), "{name}");
        }
        assert_eq!(
            views
                .schema()
                .field_with_name("offset")
                .unwrap()
                .data_type(),
            plain
                .schema()
                .field_with_name("offset")
                .unwrap()
                .data_type()
        );
        let expected = rebuilt(&file, plain);
        assert!(!expected.is_empty());
        assert_eq!(rebuilt(&file, views), expected, "{codec}");
        assert_eq!(read_segment_bytes(file, 0).unwrap(), expected, "{codec}");
    }
    // The rebuilt batches hold the records that went in, nulls included.
    let file = write_segment(&info(), &input, &opts(40)).unwrap();
    assert_eq!(replayed_records(file), records_of(&input));
}
