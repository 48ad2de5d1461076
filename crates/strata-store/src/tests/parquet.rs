use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::{ArrowWriter, ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::properties::WriterProperties;

use crate::{CountingStore, ObjectFileReader, StoreMetrics, DEFAULT_FOOTER_PREFETCH};

const ROWS: i64 = 50_000;
const ROWS_PER_GROUP: usize = 10_000;

fn segment() -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("offset", DataType::Int64, false),
        Field::new("value", DataType::Utf8, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_size(ROWS_PER_GROUP)
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props)).unwrap();
    let offsets = Int64Array::from_iter_values(0..ROWS);
    let values = StringArray::from_iter_values((0..ROWS).map(|i| format!("value-{i:012}")));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(offsets), Arc::new(values)]).unwrap();
    writer.write(&batch).unwrap();
    writer.into_inner().unwrap()
}

#[tokio::test]
async fn reads_footer_and_one_row_group_with_ranged_gets() {
    let metrics = StoreMetrics::new();
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(
        Arc::new(InMemory::new()),
        Arc::clone(&metrics),
    ));
    let path = Path::from("topics/t/0/00000000000000000000.parquet");
    let file = segment();
    let size = file.len() as u64;
    assert!(
        size > 4 * DEFAULT_FOOTER_PREFETCH as u64,
        "segment too small: {size}"
    );
    store.put(&path, file.into()).await.unwrap();
    let after_put = metrics.snapshot();

    let reader = ObjectFileReader::new(Arc::clone(&store), path, size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.unwrap();
    let footer = metrics.snapshot();
    assert_eq!(footer.gets - after_put.gets, 1, "footer read in one GET");
    assert!(footer.bytes_got <= DEFAULT_FOOTER_PREFETCH as u64);
    assert_eq!(builder.metadata().num_row_groups(), 5);

    let mask = ProjectionMask::roots(builder.parquet_schema(), [0]);
    let stream = builder
        .with_row_groups(vec![3])
        .with_projection(mask)
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let offsets: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            assert_eq!(col.null_count(), 0);
            col.values().to_vec()
        })
        .collect();
    let first = 3 * ROWS_PER_GROUP as i64;
    assert_eq!(
        offsets,
        (first..first + ROWS_PER_GROUP as i64).collect::<Vec<_>>()
    );

    let read = metrics.snapshot().bytes_got;
    assert!(
        read < size / 5,
        "one column of one row group should cost a fraction of the {size}-byte object, read {read}"
    );
}
