//! The crate's error type and the classification of `object_store` errors that the retry
//! layer and callers share.

use std::path::PathBuf;

/// Errors from opening or using an object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store spec string could not be understood.
    #[error("invalid object store spec {spec:?}: {reason}")]
    InvalidSpec { spec: String, reason: String },

    /// The local root directory could not be created.
    #[error("cannot create local store directory {}: {source}", path.display())]
    LocalRoot {
        path: PathBuf,
        source: std::io::Error,
    },

    /// An operation on the object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
}

impl StoreError {
    /// True when trying the same operation again may succeed (throttling, 5xx, timeouts).
    pub fn is_retriable(&self) -> bool {
        match self {
            StoreError::ObjectStore(e) => is_transient(e),
            StoreError::InvalidSpec { .. } | StoreError::LocalRoot { .. } => false,
        }
    }

    /// True when the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::ObjectStore(object_store::Error::NotFound { .. })
        )
    }

    /// True when a conditional put lost: `PutMode::Create` on an existing key
    /// (`AlreadyExists`) or `PutMode::Update` against a changed object (`Precondition`).
    /// This is how a stale writer learns it has been fenced.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::ObjectStore(
                object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
            )
        )
    }
}

/// Whether an `object_store` error is worth retrying.
///
/// S3 throttling (503 SlowDown), 500s, connection resets and our own per-attempt timeouts
/// all surface as `Generic` once the HTTP client has given up. The answers that describe
/// the object (missing, unchanged, already there, changed underneath us) and the ones that
/// describe the caller (bad path, no permission, unsupported) would come back the same on
/// every attempt, so retrying them only delays the error.
pub fn is_transient(err: &object_store::Error) -> bool {
    use object_store::Error as E;
    match err {
        E::Generic { .. } | E::JoinError { .. } => true,
        E::NotFound { .. }
        | E::NotModified { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => false,
        // The enum is non-exhaustive; a new kind is more likely a fault than an answer.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic() -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: "503 SlowDown".into(),
        }
    }

    #[test]
    fn classifies_errors() {
        assert!(StoreError::from(generic()).is_retriable());
        let nf = StoreError::from(object_store::Error::NotFound {
            path: "a".into(),
            source: "gone".into(),
        });
        assert!(nf.is_not_found() && !nf.is_retriable() && !nf.is_conflict());
        let exists = StoreError::from(object_store::Error::AlreadyExists {
            path: "a".into(),
            source: "there".into(),
        });
        assert!(exists.is_conflict() && !exists.is_retriable());
        let spec = StoreError::InvalidSpec {
            spec: "ftp://x".into(),
            reason: "unknown scheme".into(),
        };
        assert!(!spec.is_retriable());
        assert!(spec.to_string().starts_with("invalid object store spec"));
    }
}
