//! Inflating compressed batch bodies (gzip, snappy raw and xerial-framed, lz4 frame, zstd)
//! with a hard cap on the output, so a small hostile batch cannot allocate without bound.

use std::io::Read;

use crate::batch::Compression;
use crate::FormatError;

/// Largest decompressed body accepted. Kafka's default max.message.bytes is ~1 MiB, and
/// even generous configurations stay far below this.
pub const MAX_DECOMPRESSED_LEN: usize = 256 * 1024 * 1024;

/// Header of the snappy-java (xerial) stream format the Java client writes.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, then version and compatible-version ints.
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses `body` with `codec`, failing if the output would exceed `limit` bytes.
pub(crate) fn decompress(
    codec: Compression,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, FormatError> {
    match codec {
        Compression::None => {
            if body.len() > limit {
                return Err(FormatError::TooLarge { limit });
            }
            Ok(body.to_vec())
        }
        Compression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(body), limit),
        Compression::Snappy => {
            if body.len() >= XERIAL_HEADER_LEN && body[..8] == XERIAL_MAGIC {
                snappy_xerial(&body[XERIAL_HEADER_LEN..], limit)
            } else {
                let mut out = Vec::new();
                snappy_raw_into(body, limit, &mut out)?;
                Ok(out)
            }
        }
        Compression::Lz4 => read_capped(lz4_flex::frame::FrameDecoder::new(body), limit),
        Compression::Zstd => {
            // A streaming decoder: Kafka clients may write frames without a content size.
            let decoder = zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|e| FormatError::Decompress(format!("zstd: {e}")))?;
            read_capped(decoder, limit)
        }
    }
}

/// Reads at most `limit` bytes, then probes one more to tell "exactly limit" from "more".
fn read_capped(reader: impl Read, limit: usize) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::Decompress(e.to_string()))?;
    if out.len() > limit {
        return Err(FormatError::TooLarge { limit });
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its announced size before allocating.
fn snappy_raw_into(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let len = snap::raw::decompress_len(block)
        .map_err(|e| FormatError::Decompress(format!("snappy: {e}")))?;
    let start = out.len();
    let end = start
        .checked_add(len)
        .filter(|&end| end <= limit)
        .ok_or(FormatError::TooLarge { limit })?;
    out.resize(end, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| FormatError::Decompress(format!("snappy: {e}")))?;
    out.truncate(start + written);
    Ok(())
}

/// xerial framing: a sequence of (i32 big-endian length, raw snappy block).
fn snappy_xerial(mut rest: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(FormatError::Truncated {
                needed: 4,
                available: rest.len(),
            });
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = usize::try_from(len)
            .map_err(|_| FormatError::Decompress(format!("snappy: negative block length {len}")))?;
        let block = rest
            .get(4..4 + len.min(rest.len()))
            .filter(|block| block.len() == len)
            .ok_or(FormatError::Truncated {
                needed: len.saturating_add(4),
                available: rest.len(),
            })?;
        snappy_raw_into(block, limit, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Compressors for tests: the same crates the decoders use, framed as Kafka clients do.
#[cfg(test)]
pub(crate) mod test_codecs {
    use std::io::Write;

    use super::XERIAL_MAGIC;
    use crate::batch::Compression;

    pub(crate) fn compress(codec: Compression, raw: &[u8]) -> Vec<u8> {
        match codec {
            Compression::None => raw.to_vec(),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(raw).unwrap();
                enc.finish().unwrap()
            }
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(raw).unwrap(),
            Compression::Lz4 => {
                let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
                enc.write_all(raw).unwrap();
                enc.finish().unwrap()
            }
            Compression::Zstd => zstd::stream::encode_all(raw, 3).unwrap(),
        }
    }

    /// snappy-java stream format with blocks of at most `block` input bytes.
    pub(crate) fn snappy_xerial(raw: &[u8], block: usize) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for chunk in raw.chunks(block.max(1)) {
            let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(c.len() as i32).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_codecs::{compress, snappy_xerial as xerial};
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips() {
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in ALL {
            let compressed = compress(codec, &raw);
            assert_eq!(
                decompress(codec, &compressed, usize::MAX).unwrap(),
                raw,
                "{codec:?}"
            );
        }
        let framed = xerial(&raw, 1000);
        assert_eq!(
            decompress(Compression::Snappy, &framed, usize::MAX).unwrap(),
            raw
        );
    }

    #[test]
    fn output_is_capped() {
        let raw = vec![0u8; 100_000];
        for codec in ALL {
            let compressed = compress(codec, &raw);
            let err = decompress(codec, &compressed, 50_000).unwrap_err();
            assert!(
                matches!(err, FormatError::TooLarge { .. }),
                "{codec:?}: {err}"
            );
            assert_eq!(
                decompress(codec, &compressed, 100_000).unwrap().len(),
                100_000
            );
        }
        let framed = xerial(&raw, 30_000);
        assert!(decompress(Compression::Snappy, &framed, 50_000).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let junk = b"definitely not compressed data at all".as_slice();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(decompress(codec, junk, 1 << 20).is_err(), "{codec:?}");
        }
        let mut framed = xerial(b"hello hello hello", 4);
        framed.truncate(framed.len() - 1);
        assert!(decompress(Compression::Snappy, &framed, 1 << 20).is_err());
    }
}
