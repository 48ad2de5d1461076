//! The metadata service over gRPC (`strata.meta.v1.MetadataService`, from
//! proto/): [`serve_meta`] puts any [`Metadata`](crate::Metadata) backend on
//! the network, and [`RemoteMetadata`] is the same trait on the other side,
//! so a broker does not care whether its metadata is in-process or remote.

mod client;
mod convert;
mod server;

pub use client::{RemoteMetadata, RemoteOptions};
pub use server::{serve_meta, MetaServer};

/// Largest message either side accepts. tonic's 4 MiB default is too small
/// for the manifest of a long-lived partition with thousands of segments.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
