//! Crate tests that span modules: the conformance suite against every backend and
//! decorator stack, retries against injected faults, and ranged Parquet reads.

mod conformance;
mod parquet;
mod retry;
