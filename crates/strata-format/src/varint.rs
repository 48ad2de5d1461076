//! Kafka's zig-zag varints (protobuf style) used inside v2 records, read without panicking.

use crate::FormatError;

/// Reads an unsigned LEB128 value of at most `max_bytes` bytes starting at `*pos`.
fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, FormatError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let Some(&byte) = buf.get(*pos) else {
            return Err(FormatError::Truncated {
                needed: pos.saturating_add(1),
                available: buf.len(),
            });
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(FormatError::corrupt("varint too long"))
}

/// Reads a zig-zag encoded 32-bit varint.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, FormatError> {
    let raw = read_unsigned(buf, pos, 5)?;
    let raw = u32::try_from(raw).map_err(|_| FormatError::corrupt("varint overflows 32 bits"))?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zig-zag encoded 64-bit varlong.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, FormatError> {
    // The tenth byte may only carry the top bit; anything more is an overflow we reject
    // rather than silently truncate.
    let start = *pos;
    let raw = read_unsigned(buf, pos, 10)?;
    if *pos - start == 10 && buf[start + 9] > 1 {
        return Err(FormatError::corrupt("varlong overflows 64 bits"));
    }
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn write_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_unsigned(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

pub(crate) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    write_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn unsigned_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes [`write_varint`] writes for `value`.
pub(crate) fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(((value << 1) ^ (value >> 31)) as u32))
}

/// Bytes [`write_varlong`] writes for `value`.
pub(crate) fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_what_is_written() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, 8192, i32::MAX, i32::MIN] {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            assert_eq!(varint_len(v), buf.len(), "varint {v}");
        }
        for v in [0, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            write_varlong(&mut buf, v);
            assert_eq!(varlong_len(v), buf.len(), "varlong {v}");
        }
    }

    #[test]
    fn varint_round_trip_edges() {
        for v in [0, 1, -1, 63, -64, 64, i32::MAX, i32::MIN] {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_varint(&buf, &mut pos).unwrap(), v);
            assert_eq!(pos, buf.len());
        }
        for v in [0, 1, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut buf = Vec::new();
            write_varlong(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_varlong(&buf, &mut pos).unwrap(), v);
            assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn known_encodings() {
        let mut buf = Vec::new();
        write_varint(&mut buf, -1);
        assert_eq!(buf, [0x01]);
        buf.clear();
        write_varint(&mut buf, 150);
        assert_eq!(buf, [0xac, 0x02]);
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        let mut pos = 0;
        assert!(read_varint(&[0xff; 6], &mut pos).is_err());
        let mut pos = 0;
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f], &mut pos).is_err());
        let mut pos = 0;
        assert!(read_varint(&[0x80], &mut pos).is_err());
        let mut pos = 0;
        assert!(read_varlong(&[0xff; 10], &mut pos).is_err());
    }
}
