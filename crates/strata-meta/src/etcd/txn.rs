//! Building blocks of etcd transactions: the compares that make a write a
//! compare-and-swap, the operations, and splitting work to fit etcd's
//! limits on operations and bytes per transaction.

use prost::Message;
use strata_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use strata_proto::etcdserverpb::request_op::Request;
use strata_proto::etcdserverpb::response_op::Response;
use strata_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnResponse,
};
use strata_proto::mvccpb::KeyValue;

use super::keys::prefix_end;
use crate::{MetaError, Result};

/// etcd's default `--max-txn-ops`: the most compares, and the most
/// operations per branch, one transaction may carry.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// Below etcd's default `--max-request-bytes` (1.5 MiB), leaving room for
/// the compares and framing.
pub(crate) const MAX_TXN_BYTES: usize = 1 << 20;

/// Holds while `key` is unchanged since it was read at `mod_revision`; with
/// 0 it holds while the key does not exist (etcd compares a missing key as
/// all zeroes, and every write gives a key a new, higher revision).
pub(crate) fn unchanged(key: &str, mod_revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::ModRevision(mod_revision)),
    }
}

/// Holds while no key under `prefix` was created or changed after store
/// revision `revision` (deletions it cannot see: guard them another way).
pub(crate) fn none_newer(prefix: &str, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Less as i32,
        target: CompareTarget::Mod as i32,
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix),
        target_union: Some(TargetUnion::ModRevision(revision + 1)),
    }
}

pub(crate) fn put(key: &str, value: impl Into<Vec<u8>>) -> RequestOp {
    put_leased(key, value, 0)
}

pub(crate) fn put_leased(key: &str, value: impl Into<Vec<u8>>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.into(),
            lease,
            ..Default::default()
        })),
    }
}

pub(crate) fn delete(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

pub(crate) fn delete_prefix(prefix: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix),
            ..Default::default()
        })),
    }
}

pub(crate) fn get(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(range(key))),
    }
}

pub(crate) fn get_prefix(prefix: &str, keys_only: bool) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(range_prefix(prefix, keys_only))),
    }
}

pub(crate) fn range(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub(crate) fn range_prefix(prefix: &str, keys_only: bool) -> RangeRequest {
    RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix),
        keys_only,
        ..Default::default()
    }
}

/// The results of a transaction's range operations, in order.
pub(crate) fn ranges(resp: TxnResponse) -> Result<Vec<RangeResponse>> {
    resp.responses
        .into_iter()
        .map(|r| match r.response {
            Some(Response::ResponseRange(r)) => Ok(r),
            _ => Err(MetaError::Storage(
                "etcd txn: expected a range result".into(),
            )),
        })
        .collect()
}

/// The single key a range for one key found.
pub(crate) fn single(r: RangeResponse) -> Option<KeyValue> {
    r.kvs.into_iter().next()
}

pub(crate) fn key_str(kv: &KeyValue) -> Result<&str> {
    std::str::from_utf8(&kv.key).map_err(|_| MetaError::Storage("etcd key is not UTF-8".into()))
}

/// Splits `ops` into batches of at most `max_ops` operations and about
/// `MAX_TXN_BYTES` bytes each (a single larger one stays alone).
pub(crate) fn batches(ops: Vec<RequestOp>, max_ops: usize) -> Vec<Vec<RequestOp>> {
    let mut out: Vec<Vec<RequestOp>> = Vec::new();
    let mut bytes = 0;
    for op in ops {
        let len = op.encoded_len();
        match out.last_mut() {
            Some(b) if b.len() < max_ops && bytes + len <= MAX_TXN_BYTES => {
                bytes += len;
                b.push(op);
            }
            _ => {
                bytes = len;
                out.push(vec![op]);
            }
        }
    }
    out
}

/// Whether `ops` fit one transaction.
pub(crate) fn fits(ops: &[RequestOp], max_ops: usize) -> bool {
    ops.len() <= max_ops && ops.iter().map(|o| o.encoded_len()).sum::<usize>() <= MAX_TXN_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_op_and_byte_limits() {
        let small: Vec<RequestOp> = (0..10).map(|i| put(&format!("k{i}"), "v")).collect();
        let b = batches(small, 4);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let big = vec![0u8; MAX_TXN_BYTES / 2 + 1];
        let ops = vec![put("a", big.clone()), put("b", big.clone()), put("c", big)];
        assert_eq!(batches(ops.clone(), 128).len(), 3);
        assert!(!fits(&ops, 128));
        assert!(fits(&ops[..1], 128));
    }
}
