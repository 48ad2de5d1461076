//! Cold replay: read a topic back after the broker restarted with its cache deleted, so
//! every byte comes from the object store, beside the store's own ranged-GET rate for
//! the same objects.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use object_store::ObjectStore;
use strata_store::S3Options;

use crate::target::{S3Server, BUCKET, S3_KEY, S3_SECRET};

/// Bytes a raw read asks for at once, and how many ranges are in flight.
const RANGE_BYTES: u64 = 8 << 20;
const IN_FLIGHT: usize = 8;

/// What reading every object under `prefix` in ranged GETs achieved.
pub struct RawGets {
    pub bytes: u64,
    pub secs: f64,
    pub gets: u64,
}

/// Reads up to `limit` bytes of the objects under `prefix` through the same endpoint
/// the broker used, `IN_FLIGHT` ranges of `RANGE_BYTES` at a time.
pub fn raw_get_rate(s3: &S3Server, prefix: &str, limit: u64) -> anyhow::Result<RawGets> {
    let store = strata_store::open_s3(&S3Options {
        bucket: BUCKET.to_string(),
        prefix: String::new(),
        region: Some("us-east-1".to_string()),
        endpoint: Some(s3.endpoint.clone()),
        access_key_id: Some(S3_KEY.to_string()),
        secret_access_key: Some(S3_SECRET.to_string()),
        session_token: None,
        sign_payload: false,
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let prefix = object_store::path::Path::from(prefix);
        let objects: Vec<_> = store
            .list(Some(&prefix))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let mut ranges = Vec::new();
        let mut planned = 0u64;
        'plan: for o in &objects {
            let mut at = 0u64;
            while at < o.size {
                let end = (at + RANGE_BYTES).min(o.size);
                ranges.push((o.location.clone(), at..end));
                planned += end - at;
                at = end;
                if planned >= limit {
                    break 'plan;
                }
            }
        }
        let store: Arc<dyn ObjectStore> = store;
        let started = Instant::now();
        let gets = ranges.len() as u64;
        let mut reads = futures::stream::iter(ranges)
            .map(|(path, range)| {
                let store = store.clone();
                async move { store.get_range(&path, range).await }
            })
            .buffer_unordered(IN_FLIGHT);
        let mut bytes = 0u64;
        while let Some(r) = reads.next().await {
            bytes += r?.len() as u64;
        }
        Ok(RawGets {
            bytes,
            secs: started.elapsed().as_secs_f64(),
            gets,
        })
    })
}
