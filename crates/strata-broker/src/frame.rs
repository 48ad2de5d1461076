//! Response frames made of several buffers, so a fetch response carries the
//! log's record batches by reference instead of copying them into one buffer:
//! a 50 MiB fetch answer used to be built twice (the batches joined, then the
//! whole frame encoded), on the same cores that decode and serve replays.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::ops::Range;
use std::sync::OnceLock;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// A response frame: its buffers in order, written with vectored writes.
pub(crate) struct Frame {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        let remaining = b.len();
        let parts = if b.is_empty() {
            VecDeque::new()
        } else {
            VecDeque::from([b])
        };
        Frame { parts, remaining }
    }
}

impl Frame {
    /// The frame as one buffer (joined only if it has several parts).
    pub(crate) fn into_bytes(mut self) -> Bytes {
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.pop_front().unwrap_or_default(),
            _ => self.copy_to_bytes(self.remaining),
        }
    }
}

impl Buf for Frame {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of a frame");
        self.remaining -= cnt;
        while cnt > 0 {
            let front = self.parts.front_mut().expect("checked against remaining");
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(&self.parts) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }
}

/// Record sets at least this large are referenced; smaller ones are cheaper
/// to copy than to write as a buffer of their own.
const SHARE_MIN_BYTES: usize = 16 << 10;

/// Room for the stand-ins of one response: Kafka's broker caps a fetch
/// response at `fetch.max.bytes`, 55 MiB by default. Record sets past it are
/// joined instead.
const STAND_IN_BYTES: usize = 64 << 20;

/// Zeroes that are never written or read: the stand-ins are slices of it. At
/// this size glibc maps it on its own, so it takes address space, not memory.
fn stand_in_region() -> &'static Bytes {
    static REGION: OnceLock<Bytes> = OnceLock::new();
    REGION.get_or_init(|| Bytes::from(vec![0u8; STAND_IN_BYTES]))
}

/// The record sets of one response that its frame refers to rather than copies.
///
/// A record set goes into the response message as one `Bytes`. A partition
/// whose answer is several batches gets a stand-in there: a slice of a zero
/// region, as long as the batches together, which the encoder writes through
/// [`SharingBuf`] and which the frame replaces by the batches themselves.
/// Each stand-in of a response is a different slice, so its address and length
/// name it.
#[derive(Default)]
pub(crate) struct RecordSets {
    /// What the encoder will be given, by (address, length): the parts it stands for.
    sets: HashMap<(usize, usize), Vec<Bytes>>,
    /// Bytes of the stand-in region handed out so far.
    used: usize,
}

impl RecordSets {
    /// The value for a partition's `records` field that carries `batches`.
    pub(crate) fn add(&mut self, batches: &[Bytes]) -> Option<Bytes> {
        let size: usize = batches.iter().map(Bytes::len).sum();
        // The value, and what the frame sends in its place when it is shared.
        let (set, parts) = match batches {
            [] => return None,
            [one] => (one.clone(), batches.to_vec()),
            _ if size >= SHARE_MIN_BYTES && self.used + size <= STAND_IN_BYTES => {
                let at = self.used;
                self.used += size;
                (stand_in_region().slice(at..at + size), batches.to_vec())
            }
            many => {
                let mut buf = BytesMut::with_capacity(size);
                for b in many {
                    buf.extend_from_slice(b);
                }
                let joined = buf.freeze();
                (joined.clone(), vec![joined])
            }
        };
        // Stand-ins are never below this size, so every one is replaced.
        if set.len() >= SHARE_MIN_BYTES {
            self.sets.insert((set.as_ptr() as usize, set.len()), parts);
        }
        Some(set)
    }
}

/// An encoding target that copies everything except the byte strings it was
/// told it may share: when the encoder writes one of those, the bytes written
/// so far become a part, and the shared parts the next ones.
struct SharingBuf {
    head: BytesMut,
    parts: VecDeque<Bytes>,
    /// Length of `parts`: `head` starts at this offset of the frame.
    done: usize,
    shared: HashMap<(usize, usize), Vec<Bytes>>,
}

impl SharingBuf {
    fn cut(&mut self) {
        if !self.head.is_empty() {
            let head = self.head.split().freeze();
            self.done += head.len();
            self.parts.push_back(head);
        }
    }
}

// The one unsafe trait in the broker: kafka-protocol encodes into a `BufMut`, and
// only a `BufMut` of our own can see a record set go by and keep a reference
// instead of a copy.
// SAFETY: every method hands on to `head`, whose `BufMut` implementation upholds
// the contract; `put_slice` only adds finished parts in front of it.
#[allow(unsafe_code)]
unsafe impl BufMut for SharingBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `head.chunk_mut()`.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SHARE_MIN_BYTES {
            if let Some(parts) = self.shared.remove(&(src.as_ptr() as usize, src.len())) {
                self.cut();
                for b in parts {
                    self.done += b.len();
                    self.parts.push_back(b);
                }
                return;
            }
        }
        self.head.extend_from_slice(src);
    }
}

// Offsets are the frame's; the encoder only seeks within what it has not
// handed on (responses compute their sizes up front instead of back-patching).
impl ByteBufMut for SharingBuf {
    fn offset(&self) -> usize {
        self.done + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        ByteBufMut::seek(&mut self.head, offset - self.done)
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        self.head.range(r.start - self.done..r.end - self.done)
    }
}

/// Encodes a response frame (size, header, body) whose record sets found in
/// `shared` are referenced rather than copied. The size is computed first, so
/// the frame is written once into a buffer of the right size (growing one by
/// doubling copied a many-MB fetch answer again at each step).
pub(crate) fn frame_sharing<T: Encodable>(
    header: &RequestHeader,
    body: &T,
    shared: RecordSets,
) -> Option<Frame> {
    let key = ApiKey::try_from(header.request_api_key).ok()?;
    let version = header.request_api_version;
    let hv = key.response_header_version(version);
    let rh = ResponseHeader::default().with_correlation_id(header.correlation_id);
    let size = rh
        .compute_size(hv)
        .and_then(|h| Ok(h + body.compute_size(version)?));
    let size = match size.map(i32::try_from) {
        Ok(Ok(size)) => size,
        Ok(Err(_)) | Err(_) => {
            tracing::warn!(api = ?key, version, "response too large to frame");
            return None;
        }
    };
    let shared_len: usize = shared.sets.keys().map(|&(_, len)| len).sum();
    let mut buf = SharingBuf {
        head: BytesMut::with_capacity((4 + size as usize).saturating_sub(shared_len)),
        parts: VecDeque::new(),
        done: 0,
        shared: shared.sets,
    };
    buf.put_i32(size);
    if let Err(e) = rh
        .encode(&mut buf, hv)
        .and_then(|_| body.encode(&mut buf, version))
    {
        tracing::warn!(api = ?key, version, error = %e, "encoding response failed");
        return None;
    }
    let region = stand_in_region().as_ptr_range();
    if buf
        .shared
        .keys()
        .any(|&(at, _)| region.contains(&(at as *const u8)))
    {
        // The encoder wrote a stand-in in pieces or not at all: sending the
        // frame would send zeroes for records.
        tracing::error!(api = ?key, version, "record set stand-in not replaced; response dropped");
        return None;
    }
    buf.cut();
    let remaining = buf.done;
    debug_assert_eq!(remaining, 4 + size as usize);
    Some(Frame {
        parts: buf.parts,
        remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    fn header(version: i16) -> RequestHeader {
        RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
    }

    /// The frame of a response carrying `partitions` through [`RecordSets`],
    /// and the one-buffer frame of the same response with each partition's
    /// batches joined: what it must carry, byte for byte.
    fn shared_and_copied(version: i16, partitions: &[Vec<Bytes>]) -> (Frame, Bytes) {
        let joined: Vec<Bytes> = partitions.iter().map(|b| b.concat().into()).collect();
        let copied = crate::conn::frame(&header(version), &response(&joined)).unwrap();
        let mut sets = RecordSets::default();
        let records: Vec<Bytes> = partitions.iter().filter_map(|p| sets.add(p)).collect();
        let frame = frame_sharing(&header(version), &response(&records), sets).unwrap();
        (frame, copied)
    }

    #[test]
    fn a_shared_frame_is_byte_for_byte_the_copied_one_and_references_large_record_sets() {
        let large = Bytes::from(vec![0xAB; 100_000]);
        let small = Bytes::from(vec![0xCD; 100]);
        let other = Bytes::from(vec![0xEF; 50_000]);
        let partitions = vec![
            vec![large.clone()],
            vec![small.clone()],
            vec![other.clone()],
        ];
        for version in [4, 11, 12, 16] {
            let (mut frame, copied) = shared_and_copied(version, &partitions);
            assert_eq!(frame.remaining(), copied.len(), "version {version}");
            let shared: Vec<_> = frame.parts.iter().map(|p| p.as_ptr()).collect();
            assert!(shared.contains(&large.as_ptr()), "version {version}");
            assert!(shared.contains(&other.as_ptr()), "version {version}");
            assert!(!shared.contains(&small.as_ptr()), "version {version}");
            let bytes = frame.copy_to_bytes(frame.remaining());
            assert_eq!(bytes, copied, "version {version}");
        }
    }

    #[test]
    fn a_partition_of_several_batches_is_sent_from_the_batches_themselves() {
        let batches: Vec<Bytes> = (0..4u8).map(|i| Bytes::from(vec![i; 30_000])).collect();
        let tiny: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![0x40 + i; 100])).collect();
        let partitions = vec![batches.clone(), tiny.clone(), batches[..2].to_vec()];
        for version in [4, 11, 12, 16] {
            let (mut frame, copied) = shared_and_copied(version, &partitions);
            let shared: Vec<_> = frame.parts.iter().map(|p| p.as_ptr()).collect();
            for b in &batches {
                assert!(
                    shared.contains(&b.as_ptr()),
                    "version {version}: batch copied"
                );
            }
            // Small batches are copied into the frame; what goes out is the same.
            for b in &tiny {
                assert!(!shared.contains(&b.as_ptr()), "version {version}");
            }
            let bytes = frame.copy_to_bytes(frame.remaining());
            assert_eq!(bytes, copied, "version {version}");
        }
    }

    #[test]
    fn a_frame_is_consumed_across_its_parts() {
        let mut frame = Frame {
            parts: VecDeque::from([Bytes::from_static(b"abc"), Bytes::from_static(b"defg")]),
            remaining: 7,
        };
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(frame.chunks_vectored(&mut slices), 2);
        frame.advance(4);
        assert_eq!(frame.chunk(), b"efg");
        assert_eq!(frame.remaining(), 3);
        frame.advance(3);
        assert!(!frame.has_remaining());
    }
}
