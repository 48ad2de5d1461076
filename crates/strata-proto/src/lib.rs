//! Code generated at build time from proto/: the Strata metadata service
//! (`strata.meta.v1`) and the subset of etcd's v3 API Strata's etcd backend
//! speaks. One module per proto package.

#![allow(clippy::all, missing_docs)]

pub mod strata {
    pub mod meta {
        pub mod v1 {
            tonic::include_proto!("strata.meta.v1");
        }
    }
}

/// etcd's key-value message, shared by its KV and watch APIs.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// The KV and Lease services of etcd's v3 API, as far as Strata uses them.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
