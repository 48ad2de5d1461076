//! Turning a store spec from settings (`""`, `file`, `file:///path`, `memory`,
//! `s3://bucket/prefix`) into an `Arc<dyn ObjectStore>`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use crate::StoreError;

/// Region used when neither the options nor the environment name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Everything needed to reach an S3 bucket, spelled out so tests can pass it directly
/// instead of mutating the process environment (which races between parallel tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing slashes; empty for none.
    pub prefix: String,
    /// Defaults to [`DEFAULT_REGION`] when `None`.
    pub region: Option<String>,
    /// S3-compatible endpoint (MinIO, moto, ...). Setting one switches to path-style
    /// addressing, and an `http://` endpoint allows plain HTTP.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Hash each request body into its SigV4 signature. Off by default: hashing cost
    /// the broker more CPU than anything else on the produce path (over 40% of its
    /// own time writing 1 KiB records to s3s-fs), while TLS already protects bodies
    /// in transit and the server checks what it stores. `AWS_UNSIGNED_PAYLOAD=false`
    /// turns it on.
    pub sign_payload: bool,
}

impl S3Options {
    /// Options for `bucket`/`prefix` with region, endpoint and credentials read from the
    /// usual AWS environment variables.
    pub fn from_env(bucket: &str, prefix: &str) -> S3Options {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        S3Options {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint: var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            sign_payload: var("AWS_UNSIGNED_PAYLOAD")
                .is_some_and(|v| v.eq_ignore_ascii_case("false")),
        }
    }
}

/// Opens the store named by `spec`.
///
/// - `""` or `"file"`: the local filesystem under `local_root` (created if missing).
/// - `"file:///abs/path"`: the local filesystem under that absolute path (created).
/// - `"memory"`: an in-process store, for tests and throwaway runs.
/// - `"s3://bucket"` or `"s3://bucket/prefix"`: S3 or an S3-compatible service,
///   configured from the AWS environment variables (see [`S3Options::from_env`]).
pub fn open_store(spec: &str, local_root: &FsPath) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let spec_trimmed = spec.trim();
    if spec_trimmed.is_empty() || spec_trimmed == "file" {
        return open_local(local_root);
    }
    if spec_trimmed == "memory" {
        return Ok(Arc::new(InMemory::new()));
    }
    let invalid = |reason: &str| StoreError::InvalidSpec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    if let Some(path) = spec_trimmed.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(invalid(
                "file:// needs an absolute path, as in file:///var/strata",
            ));
        }
        return open_local(FsPath::new(path));
    }
    if let Some(rest) = spec_trimmed.strip_prefix("s3://") {
        let (bucket, prefix) = split_bucket(rest);
        if bucket.is_empty() {
            return Err(invalid("missing bucket name, as in s3://bucket/prefix"));
        }
        let opts = S3Options::from_env(bucket, prefix);
        // from_env() also brings in the credential sources we do not map ourselves
        // (web identity, container credentials, profiles' IMDS settings).
        return build_s3(AmazonS3Builder::from_env(), &opts);
    }
    match spec_trimmed.split_once("://") {
        Some((scheme, _)) => Err(invalid(&format!(
            "unknown scheme {scheme:?}; expected file, memory or s3"
        ))),
        None => Err(invalid(
            "expected \"\", file, file:///path, memory or s3://bucket/prefix",
        )),
    }
}

/// Opens an S3 store from explicit options only, ignoring the process environment.
pub fn open_s3(opts: &S3Options) -> Result<Arc<dyn ObjectStore>, StoreError> {
    build_s3(AmazonS3Builder::new(), opts)
}

fn build_s3(base: AmazonS3Builder, opts: &S3Options) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let mut builder = base
        .with_bucket_name(&opts.bucket)
        .with_region(opts.region.as_deref().unwrap_or(DEFAULT_REGION))
        // Conditional puts are how writers are fenced (PutMode::Create / Update).
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_unsigned_payload(!opts.sign_payload);
    if let Some(endpoint) = &opts.endpoint {
        // MinIO, moto and s3s-fs serve buckets by path, not by virtual host name.
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(key) = &opts.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &opts.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    if let Some(token) = &opts.session_token {
        builder = builder.with_token(token);
    }
    let s3 = builder.build()?;
    let prefix = opts.prefix.trim_matches('/');
    if prefix.is_empty() {
        Ok(Arc::new(s3))
    } else {
        Ok(Arc::new(PrefixStore::new(s3, prefix)))
    }
}

fn open_local(root: &FsPath) -> Result<Arc<dyn ObjectStore>, StoreError> {
    std::fs::create_dir_all(root).map_err(|source| StoreError::LocalRoot {
        path: PathBuf::from(root),
        source,
    })?;
    Ok(Arc::new(LocalFileSystem::new_with_prefix(root)?))
}

fn split_bucket(rest: &str) -> (&str, &str) {
    match rest.split_once('/') {
        Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
        None => (rest, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;

    #[tokio::test]
    async fn local_specs_create_their_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let store = open_store("", &root).unwrap();
        store.put(&Path::from("a/b"), "x".into()).await.unwrap();
        assert!(root.join("a/b").exists());

        let other = dir.path().join("elsewhere");
        let spec = format!("file://{}", other.display());
        let store = open_store(&spec, &root).unwrap();
        store.put(&Path::from("k"), "y".into()).await.unwrap();
        assert!(other.join("k").exists());

        assert!(open_store("file", &root).is_ok());
        assert!(open_store("memory", &root).is_ok());
    }

    #[test]
    fn bad_specs_are_refused_clearly() {
        let root = FsPath::new("/nonexistent-unused");
        for spec in ["gs://bucket", "s3://", "file://relative/path", "bucket"] {
            let err = open_store(spec, root).expect_err(spec);
            assert!(
                matches!(err, StoreError::InvalidSpec { .. }),
                "{spec}: {err}"
            );
        }
        let err = open_store("gs://bucket", root).unwrap_err().to_string();
        assert!(err.contains("unknown scheme \"gs\""), "{err}");
    }

    #[test]
    fn s3_specs_split_bucket_and_prefix() {
        assert_eq!(split_bucket("b/p/q/"), ("b", "p/q"));
        assert_eq!(split_bucket("b"), ("b", ""));
        let opts = S3Options {
            bucket: "b".into(),
            prefix: "p".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..Default::default()
        };
        // Building does no I/O, so an unreachable endpoint is fine here.
        let store = open_s3(&opts).unwrap();
        assert!(store.to_string().contains("Prefix"), "{store}");
    }
}
