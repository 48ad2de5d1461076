//! One client connection: a reader task frames requests (a frame is checked
//! complete and within `socket.request.max.bytes` before it is parsed), and
//! this task answers them in order. Produce requests append in arrival
//! order and then wait for durability concurrently, so a pipelining producer
//! gets many acks=all requests in flight per flush.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::api::{self, PendingFrame, Reply};
use crate::frame::Frame;
use crate::Broker;

/// Requests read ahead of the one being answered. acks=all produce requests
/// all wait for the next WAL flush, so a producer that sends many small ones
/// (librdkafka with linger.ms=0) needs them all in the same flush: with a
/// shallow pipeline the rest queue in the socket and wait one flush per
/// pipeline's worth, which grows without bound at a steady rate.
const PIPELINE: usize = 4096;

/// Bytes of requests read ahead and not yet answered, per connection.
const PIPELINE_BYTES: usize = 64 << 20;

pub(crate) async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let (rd, mut wr) = socket.into_split();
    let (tx, mut rx) = mpsc::channel::<(Bytes, OwnedSemaphorePermit)>(PIPELINE);
    let max = broker.config.max_request_bytes;
    let budget = Arc::new(Semaphore::new(PIPELINE_BYTES));
    let reader = tokio::spawn(read_frames(rd, tx, max, budget, peer));
    let mut pending: FuturesOrdered<PendingFrame> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled(), if pending.is_empty() => break,
            frame = rx.recv(), if reading && pending.len() < PIPELINE => {
                let Some((frame, permit)) = frame else {
                    // The client closed or sent a bad frame: answer what is
                    // in flight, then close.
                    reading = false;
                    if pending.is_empty() {
                        break;
                    }
                    continue;
                };
                match handle_frame(&broker, frame, peer).await {
                    Reply::Now(Some(b)) => {
                        pending.push_back(Box::pin(async move { Some(Frame::from(b)) }))
                    }
                    Reply::Now(None) => {}
                    Reply::Later(f) => pending.push_back(Box::pin(async move {
                        let resp = f.await;
                        drop(permit);
                        resp.map(Frame::from)
                    })),
                    Reply::LaterFrame(f) => pending.push_back(Box::pin(async move {
                        let resp = f.await;
                        drop(permit);
                        resp
                    })),
                    Reply::Close => break,
                }
            }
            Some(resp) = pending.next(), if !pending.is_empty() => {
                if let Some(mut resp) = resp {
                    if let Err(e) = wr.write_all_buf(&mut resp).await {
                        tracing::debug!(%peer, error = %e, "write failed; closing");
                        break;
                    }
                }
                if !reading && pending.is_empty() {
                    break;
                }
            }
            else => break,
        }
    }
    reader.abort();
    let _ = wr.shutdown().await;
}

async fn read_frames(
    mut rd: OwnedReadHalf,
    tx: mpsc::Sender<(Bytes, OwnedSemaphorePermit)>,
    max: usize,
    budget: Arc<Semaphore>,
    peer: SocketAddr,
) {
    loop {
        let len = match rd.read_i32().await {
            Ok(n) => n,
            Err(_) => return,
        };
        if len < 8 || len as usize > max {
            tracing::warn!(%peer, len, max, "request frame size out of bounds; closing connection");
            return;
        }
        // A frame larger than the whole budget takes all of it, alone.
        let want = (len as usize).min(PIPELINE_BYTES) as u32;
        let Ok(permit) = budget.clone().acquire_many_owned(want).await else {
            return;
        };
        // Read into spare capacity rather than a zeroed buffer: zeroing a produce
        // request's megabyte costs as much as copying it in from the socket.
        let len = len as usize;
        let mut buf = BytesMut::with_capacity(len);
        let mut frame = (&mut rd).take(len as u64);
        while buf.len() < len {
            match frame.read_buf(&mut buf).await {
                Ok(0) => {
                    tracing::warn!(%peer, len, got = buf.len(), "truncated request frame; closing connection");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%peer, len, error = %e, "truncated request frame; closing connection");
                    return;
                }
            }
        }
        if tx.send((buf.freeze(), permit)).await.is_err() {
            return;
        }
    }
}

/// Encodes a response frame: size, header, body, in one buffer.
pub(crate) fn frame<T: Encodable>(header: &RequestHeader, body: &T) -> Option<Bytes> {
    crate::frame::frame_sharing(header, body, Default::default()).map(Frame::into_bytes)
}

async fn handle_frame(broker: &Arc<Broker>, mut frame: Bytes, peer: SocketAddr) -> Reply {
    let key_raw = frame.clone().get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation = (&frame[4..8]).get_i32();
    let Ok(key) = ApiKey::try_from(key_raw) else {
        tracing::warn!(%peer, api_key = key_raw, "unknown api key; closing connection");
        return Reply::Close;
    };
    let Some(range) = api::supported(key) else {
        tracing::warn!(%peer, api = ?key, "api not supported; closing connection");
        return Reply::Close;
    };
    if version < range.0 || version > range.1 {
        if key == ApiKey::ApiVersions {
            // Kafka answers an unknown ApiVersions version in v0 form with
            // UNSUPPORTED_VERSION, so the client can retry with one it shares.
            return Reply::Now(api::api_versions::unsupported(correlation));
        }
        tracing::warn!(%peer, api = ?key, version, "unsupported api version; closing connection");
        return Reply::Close;
    }
    let header = match std::panic::catch_unwind(move || {
        let hv = key.request_header_version(version);
        RequestHeader::decode(&mut frame, hv).map(|h| (h, frame))
    }) {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::warn!(%peer, api = ?key, version, error = %e, "malformed request header; closing connection");
            return Reply::Close;
        }
        Err(_) => {
            tracing::warn!(%peer, api = ?key, version, "request header decoder panicked; closing connection");
            return Reply::Close;
        }
    };
    let (header, body) = header;
    api::dispatch(broker, key, header, body, peer).await
}
