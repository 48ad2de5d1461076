//! Test support shared with other crates' tests (feature `testing`): the object store
//! conformance suite and a moto S3 server harness.

mod conformance;
mod moto;

pub use conformance::conformance_suite;
pub use moto::MotoServer;
