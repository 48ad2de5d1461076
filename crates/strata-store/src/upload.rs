//! Uploading large objects (sealed segments) in parts, so a big PUT neither needs one
//! long-lived request nor restarts from zero when a part fails.

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, PutPayload, PutResult};

use crate::StoreError;

/// Smallest part S3 accepts for all but the last part of a multipart upload.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploaded concurrently by [`put_large`]; bounds memory and connections per upload.
const MAX_PARTS_IN_FLIGHT: usize = 4;

/// Stores `bytes` at `path`: one PUT when it fits in `part_size`, otherwise a multipart
/// upload of `part_size` parts (the last may be smaller), aborted if any part fails.
///
/// S3 refuses parts smaller than [`MIN_PART_SIZE`] except the last, so callers pass at
/// least that against real buckets. The object appears only when the upload completes;
/// readers never see a partial object.
pub async fn put_large(
    store: &dyn ObjectStore,
    path: &Path,
    bytes: Bytes,
    part_size: usize,
) -> Result<PutResult, StoreError> {
    let part_size = part_size.max(1);
    if bytes.len() <= part_size {
        return Ok(store.put(path, PutPayload::from_bytes(bytes)).await?);
    }
    let mut upload = store.put_multipart(path).await?;
    let outcome = match upload_parts(upload.as_mut(), bytes, part_size).await {
        Ok(()) => upload.complete().await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(result) => Ok(result),
        Err(err) => {
            if let Err(abort_err) = upload.abort().await {
                // The bucket's lifecycle rule for incomplete uploads reclaims what is left.
                tracing::warn!(path = %path, error = %abort_err, "aborting multipart upload failed");
            }
            Err(err.into())
        }
    }
}

async fn upload_parts(
    upload: &mut dyn MultipartUpload,
    mut rest: Bytes,
    part_size: usize,
) -> object_store::Result<()> {
    let mut in_flight = FuturesUnordered::new();
    while !rest.is_empty() {
        if in_flight.len() >= MAX_PARTS_IN_FLIGHT {
            if let Some(done) = in_flight.next().await {
                done?;
            }
        }
        // Slices share the caller's buffer: no copy per part. put_part numbers parts in
        // call order, so they may finish in any order.
        let chunk = rest.split_to(part_size.min(rest.len()));
        in_flight.push(upload.put_part(PutPayload::from_bytes(chunk)));
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    Ok(())
}
