//! `ObjectFileReader`: lets the Parquet async reader fetch a segment from object storage
//! with ranged GETs, so reading a few row groups costs the footer plus those row groups,
//! never the whole object.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// Default bytes fetched from the end of the object when reading the footer. Our segment
/// footers are well under this, so the metadata normally costs one GET instead of two
/// (one for the 8-byte trailer, one for the footer it points to).
pub const DEFAULT_FOOTER_PREFETCH: usize = 64 * 1024;

/// A Parquet object in a store, read by byte ranges.
#[derive(Clone, Debug)]
pub struct ObjectFileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    footer_prefetch: usize,
}

impl ObjectFileReader {
    /// `size` is the object's length, known from the manifest or a HEAD; knowing it lets
    /// the footer be fetched by plain ranges, which every S3-compatible store supports.
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Self {
        ObjectFileReader {
            store,
            path,
            size,
            footer_prefetch: DEFAULT_FOOTER_PREFETCH,
        }
    }

    /// Sets how many trailing bytes the first metadata fetch asks for.
    pub fn with_footer_prefetch(mut self, bytes: usize) -> Self {
        self.footer_prefetch = bytes;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

fn external(err: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(err))
}

impl AsyncFileReader for ObjectFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        // get_ranges lets the store coalesce adjacent column chunks into fewer requests.
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let page_index = if options.is_some_and(|o| o.page_index()) {
                PageIndexPolicy::Optional
            } else {
                PageIndexPolicy::Skip
            };
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_page_index_policy(page_index)
                .with_prefetch_hint(Some(self.footer_prefetch))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
