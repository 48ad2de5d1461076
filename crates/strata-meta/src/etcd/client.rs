//! A small etcd v3 client: the KV and Lease calls the etcd backend makes,
//! over one tonic channel per endpoint, failing over between endpoints.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use strata_proto::etcdserverpb::kv_client::KvClient;
use strata_proto::etcdserverpb::lease_client::LeaseClient;
use strata_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::{MetaError, Result};

/// Short enough that a dead endpoint is left quickly for the next one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A request etcd has not answered by then is failed over; etcd's own
/// proposal timeout is shorter, so a healthy cluster never hits this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Listing every partition manifest of a big topic can exceed tonic's 4 MiB
/// default; etcd itself sends responses of any size.
const MAX_RESPONSE_BYTES: usize = 512 << 20;

pub(crate) struct Client {
    endpoints: Vec<(String, Channel)>,
    /// Where the next call starts: the endpoint that answered last.
    current: AtomicUsize,
}

/// Errors another member may not have: a dead or unreachable endpoint, or
/// one that lost its raft leader.
fn fails_over(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled
    )
}

fn status_error(what: &str, s: &Status) -> MetaError {
    MetaError::Storage(format!("etcd {what}: {:?}: {}", s.code(), s.message()))
}

impl Client {
    /// Channels connect lazily, so this succeeds with every endpoint down;
    /// the first call reports the failure.
    pub(crate) fn new(endpoints: &[String]) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(MetaError::Storage("no etcd endpoints given".into()));
        }
        let mut out = Vec::new();
        for e in endpoints {
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            };
            let channel = Endpoint::from_shared(url.clone())
                .map_err(|err| MetaError::Storage(format!("etcd endpoint {e}: {err}")))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .tcp_nodelay(true)
                .connect_lazy();
            out.push((url, channel));
        }
        Ok(Self {
            endpoints: out,
            current: AtomicUsize::new(0),
        })
    }

    /// Runs `f` against the current endpoint, then each other one while the
    /// failure is one another member may not share. Resending is safe even
    /// when the first try may have applied (its answer lost): every write the
    /// backend makes is a compare-and-swap, so the resend fails its compares
    /// and the operation re-reads and answers from what it finds.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<T, Status>>,
    {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let (url, channel) = &self.endpoints[idx];
            match f(channel.clone()).await {
                Ok(v) => {
                    if i > 0 {
                        self.current.store(idx, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Err(s) if fails_over(&s) => {
                    tracing::warn!(endpoint = %url, code = ?s.code(), error = s.message(), what, "etcd call failed");
                    last = Some(s);
                }
                Err(s) => return Err(status_error(what, &s)),
            }
        }
        self.current.store((start + 1) % n, Ordering::Relaxed);
        Err(status_error(what, &last.expect("at least one endpoint")))
    }

    fn kv(channel: Channel) -> KvClient<Channel> {
        KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    pub(crate) async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.call("range", |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).range(req).await?.into_inner()) }
        })
        .await
    }

    pub(crate) async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        self.call("put", |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).put(req).await?.into_inner()) }
        })
        .await
    }

    pub(crate) async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        self.call("txn", |ch| {
            let req = req.clone();
            async move { Ok(Self::kv(ch).txn(req).await?.into_inner()) }
        })
        .await
    }

    /// A new lease of `ttl_secs` (etcd may raise it to its minimum).
    pub(crate) async fn grant(&self, ttl_secs: i64) -> Result<i64> {
        let resp = self
            .call("lease grant", |ch| async move {
                let req = LeaseGrantRequest {
                    ttl: ttl_secs,
                    id: 0,
                };
                Ok(LeaseClient::new(ch).lease_grant(req).await?.into_inner())
            })
            .await?;
        if !resp.error.is_empty() {
            return Err(MetaError::Storage(format!(
                "etcd lease grant: {}",
                resp.error
            )));
        }
        Ok(resp.id)
    }

    /// Ends a lease, deleting its keys; a lease already gone is no error.
    pub(crate) async fn revoke(&self, id: i64) -> Result<()> {
        self.call("lease revoke", |ch| async move {
            let req = LeaseRevokeRequest { id };
            match LeaseClient::new(ch).lease_revoke(req).await {
                Ok(_) => Ok(()),
                Err(s) if s.code() == Code::NotFound => Ok(()),
                Err(s) => Err(s),
            }
        })
        .await
    }

    /// Renews a lease once; its remaining TTL in seconds, 0 when it is gone.
    pub(crate) async fn keep_alive(&self, id: i64) -> Result<i64> {
        self.call("lease keep-alive", |ch| async move {
            // etcd answers each request on the stream before it sees the end
            // of the stream, so one request and one answer make a renewal.
            let once = futures::stream::iter([LeaseKeepAliveRequest { id }]);
            let mut answers = LeaseClient::new(ch)
                .lease_keep_alive(once)
                .await?
                .into_inner();
            match answers.message().await? {
                Some(a) => Ok(a.ttl),
                None => Err(Status::unavailable("keep-alive stream closed unanswered")),
            }
        })
        .await
    }
}
