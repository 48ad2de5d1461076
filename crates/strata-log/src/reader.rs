//! Reads of sealed segments: ranged GETs of the Parquet footer and of just
//! the row groups needed, re-encoded into Kafka batches, kept in a memory
//! cache by row group, with the next row group fetched ahead so a replay
//! streams instead of waiting on one GET at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use strata_format::segment::{arrow_to_records, merge_groups, row_groups_from_offset};
use strata_meta::SegmentEntry;
use strata_store::ObjectFileReader;

use crate::LogError;

/// One row group re-encoded: (first offset, last offset, batch bytes).
type Chunk = Arc<Vec<(i64, i64, Bytes)>>;

struct Cache {
    budget: usize,
    used: usize,
    tick: u64,
    chunks: HashMap<(String, usize), (Chunk, usize, u64)>,
    footers: HashMap<String, ArrowReaderMetadata>,
}

pub(crate) struct SegmentReader {
    store: Arc<dyn ObjectStore>,
    cache: Arc<Mutex<Cache>>,
}

impl SegmentReader {
    pub fn new(store: Arc<dyn ObjectStore>, budget: usize) -> Self {
        Self {
            store,
            cache: Arc::new(Mutex::new(Cache {
                budget,
                used: 0,
                tick: 0,
                chunks: HashMap::new(),
                footers: HashMap::new(),
            })),
        }
    }

    fn file(&self, seg: &SegmentEntry) -> ObjectFileReader {
        ObjectFileReader::new(
            self.store.clone(),
            Path::from(seg.key.as_str()),
            seg.size_bytes,
        )
    }

    async fn footer(&self, seg: &SegmentEntry) -> Result<ArrowReaderMetadata, LogError> {
        if let Some(m) = self.lock().footers.get(&seg.key) {
            return Ok(m.clone());
        }
        let mut file = self.file(seg);
        let m = ArrowReaderMetadata::load_async(&mut file, Default::default()).await?;
        let mut c = self.lock();
        if c.footers.len() > 4096 {
            c.footers.clear();
        }
        c.footers.insert(seg.key.clone(), m.clone());
        Ok(m)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Batches of `seg` from the one holding `offset`, up to about
    /// `max_bytes` (at least one batch).
    pub async fn read(
        &self,
        seg: &SegmentEntry,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, LogError> {
        let footer = self.footer(seg).await?;
        let groups = row_groups_from_offset(footer.metadata(), offset);
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut last_rg = None;
        'outer: for rg in groups.iter().copied() {
            let chunk = self.row_group(seg, &footer, rg).await?;
            last_rg = Some(rg);
            for (_, last, b) in chunk.iter() {
                if *last < offset {
                    continue;
                }
                if !out.is_empty() && size + b.len() > max_bytes {
                    break 'outer;
                }
                size += b.len();
                out.push(b.clone());
            }
        }
        if let Some(rg) = last_rg {
            if rg + 1 < footer.metadata().num_row_groups() {
                self.read_ahead(seg, &footer, rg + 1);
            }
        }
        Ok(out)
    }

    fn read_ahead(&self, seg: &SegmentEntry, footer: &ArrowReaderMetadata, rg: usize) {
        if self.lock().chunks.contains_key(&(seg.key.clone(), rg)) {
            return;
        }
        let this = SegmentReader {
            store: self.store.clone(),
            cache: self.cache.clone(),
        };
        let seg = seg.clone();
        let footer = footer.clone();
        tokio::spawn(async move {
            if let Err(e) = this.row_group(&seg, &footer, rg).await {
                tracing::debug!(key = seg.key, rg, error = %e, "read-ahead failed");
            }
        });
    }

    async fn row_group(
        &self,
        seg: &SegmentEntry,
        footer: &ArrowReaderMetadata,
        rg: usize,
    ) -> Result<Chunk, LogError> {
        let k = (seg.key.clone(), rg);
        {
            let mut c = self.lock();
            c.tick += 1;
            let tick = c.tick;
            if let Some(e) = c.chunks.get_mut(&k) {
                e.2 = tick;
                return Ok(e.0.clone());
            }
        }
        let stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(self.file(seg), footer.clone())
                .with_row_groups(vec![rg])
                .build()?;
        let arrow: Vec<_> = stream.try_collect().await?;
        let chunk = tokio::task::spawn_blocking(move || -> Result<Chunk, LogError> {
            let mut groups = Vec::new();
            for rb in &arrow {
                merge_groups(&mut groups, arrow_to_records(rb)?);
            }
            let out = groups
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(spec, records)| {
                    let first = records[0].offset;
                    let last = records[records.len() - 1].offset;
                    (first, last, strata_format::encode_batch(spec, records))
                })
                .collect();
            Ok(Arc::new(out))
        })
        .await
        .map_err(|e| LogError::Store(format!("decode task: {e}")))??;
        let size: usize = chunk.iter().map(|(_, _, b)| b.len()).sum();
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        c.used += size;
        if let Some(old) = c.chunks.insert(k, (chunk.clone(), size, tick)) {
            c.used -= old.1;
        }
        while c.used > c.budget && c.chunks.len() > 1 {
            let Some(victim) = c
                .chunks
                .iter()
                .min_by_key(|(_, v)| v.2)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(v) = c.chunks.remove(&victim) {
                c.used -= v.1;
            }
        }
        Ok(chunk)
    }
}
