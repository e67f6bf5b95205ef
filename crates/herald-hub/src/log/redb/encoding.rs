//! The binary encoding of an update in the `updates` table (also used by the Redis store).
//!
//! Encoding of a value of `updates`, version 1 (`varint`: unsigned LEB128, at most 10 bytes;
//! `str`: a varint byte length then UTF-8 bytes):
//!
//! ```text
//! u8 version = 1 | u8 flags (1 private, 2 has event type, 4 has retry) | varint time_ms
//! | [varint retry] | str id | varint topic count, str topic… | [str event type] | str data
//! ```
//!
//! The position is the key and is not repeated. Decoding checks every length against the bytes
//! left and refuses unknown versions, unknown flags and trailing bytes with
//! [`StoreError::Corrupt`]; it never panics.

use crate::log::StoreError;
use crate::update::{Position, StoredUpdate};

pub(super) const FORMAT_V1: u8 = 1;
const FLAG_PRIVATE: u8 = 1;
const FLAG_TYPE: u8 = 2;
const FLAG_RETRY: u8 = 4;

/// Encodes an update (without its position, which is the key); see the module documentation.
pub(in crate::log) fn encode(update: &StoredUpdate) -> Vec<u8> {
    let mut out = Vec::with_capacity(update.size() + 16);
    out.push(FORMAT_V1);
    let mut flags = 0;
    if update.private {
        flags |= FLAG_PRIVATE;
    }
    if update.event_type.is_some() {
        flags |= FLAG_TYPE;
    }
    if update.retry.is_some() {
        flags |= FLAG_RETRY;
    }
    out.push(flags);
    put_varint(&mut out, update.time_ms);
    if let Some(retry) = update.retry {
        put_varint(&mut out, retry);
    }
    put_str(&mut out, &update.id);
    put_varint(&mut out, update.topics.len() as u64);
    for topic in &update.topics {
        put_str(&mut out, topic);
    }
    if let Some(event_type) = &update.event_type {
        put_str(&mut out, event_type);
    }
    put_str(&mut out, &update.data);
    out
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Decodes the value stored at `position`; any damage is [`StoreError::Corrupt`].
pub(in crate::log) fn decode(position: Position, bytes: &[u8]) -> Result<StoredUpdate, StoreError> {
    let mut r = Reader { rest: bytes };
    let damaged =
        |what: &str| StoreError::Corrupt(format!("update at position {position}: {what}"));
    let version = r.byte().map_err(damaged)?;
    if version != FORMAT_V1 {
        return Err(damaged(&format!("unknown format version {version}")));
    }
    decode_v1(position, &mut r).map_err(damaged)
}

fn decode_v1(position: Position, r: &mut Reader<'_>) -> Result<StoredUpdate, &'static str> {
    let flags = r.byte()?;
    if flags & !(FLAG_PRIVATE | FLAG_TYPE | FLAG_RETRY) != 0 {
        return Err("unknown flags");
    }
    let time_ms = r.varint()?;
    let retry = if flags & FLAG_RETRY != 0 {
        Some(r.varint()?)
    } else {
        None
    };
    let id = r.string()?;
    let topic_count = r.varint()?;
    // Each topic takes at least one byte, so the bytes left bound a sane capacity.
    let mut topics =
        Vec::with_capacity(usize::try_from(topic_count).map_or(0, |n| n.min(r.rest.len())));
    for _ in 0..topic_count {
        topics.push(r.string()?);
    }
    let event_type = if flags & FLAG_TYPE != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let data = r.string()?;
    if !r.rest.is_empty() {
        return Err("trailing bytes");
    }
    Ok(StoredUpdate {
        position,
        id,
        topics,
        private: flags & FLAG_PRIVATE != 0,
        event_type,
        retry,
        data,
        time_ms,
    })
}

/// A cursor over an encoded update that fails instead of reading past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let (&b, rest) = self.rest.split_first().ok_or("truncated")?;
        self.rest = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err("number out of range");
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("number too long")
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.rest.len())
            .ok_or("length beyond the end")?;
        let (s, rest) = self.rest.split_at(len);
        self.rest = rest;
        let s = std::str::from_utf8(s).map_err(|_| "text is not UTF-8")?;
        Ok(s.to_owned())
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// An update using every field, with non-ASCII data (also used by the store's tests).
    pub(in super::super) fn sample(position: Position) -> StoredUpdate {
        StoredUpdate {
            position,
            id: "urn:uuid:0190b7a4-5c2e-7d41-8f3a-9b1c2d3e4f50".into(),
            topics: vec!["https://example.com/books/1".into(), "books".into()],
            private: true,
            event_type: Some("changed".into()),
            retry: Some(3_000),
            data: "{\"title\":\"Ünïcødé ✓\"}".into(),
            time_ms: 1_720_000_000_000,
        }
    }

    fn is_corrupt(result: Result<StoredUpdate, StoreError>) -> bool {
        matches!(result, Err(StoreError::Corrupt(_)))
    }

    #[test]
    fn round_trips() {
        let full = sample(7);
        let bare = StoredUpdate {
            position: 8,
            id: String::new(),
            topics: Vec::new(),
            private: false,
            event_type: None,
            retry: None,
            data: String::new(),
            time_ms: 0,
        };
        let extremes = StoredUpdate {
            position: u64::MAX,
            retry: Some(u64::MAX),
            time_ms: u64::MAX,
            data: "x".repeat(100_000),
            event_type: Some(String::new()),
            ..sample(0)
        };
        for update in [full, bare, extremes] {
            assert_eq!(decode(update.position, &encode(&update)).unwrap(), update);
        }
    }

    #[test]
    fn encoding_is_compact() {
        let update = sample(1);
        let payload = update.id.len()
            + update.topics.iter().map(String::len).sum::<usize>()
            + update.event_type.as_ref().map_or(0, String::len)
            + update.data.len();
        // version, flags, 6-byte time, 2-byte retry, 5 one-byte lengths and a topic count.
        assert_eq!(encode(&update).len(), payload + 16);
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let encoded = encode(&sample(1));
        for len in 0..encoded.len() {
            assert!(
                is_corrupt(decode(1, &encoded[..len])),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn damaged_bytes_are_corrupt() {
        let valid = encode(&sample(1));
        let mut trailing = valid.clone();
        trailing.push(0);
        let mut bad_utf8 = valid.clone();
        let data_start = valid.len() - sample(1).data.len();
        bad_utf8[data_start] = 0xff;
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![2, 0, 0],                                            // unknown version
            vec![FORMAT_V1, 0x08, 0],                                 // unknown flag
            [vec![FORMAT_V1, 0], vec![0xff; 11]].concat(),            // varint too long
            [vec![FORMAT_V1, 0], vec![0xff; 9], vec![0x02]].concat(), // varint beyond u64
            vec![FORMAT_V1, 0, 0, 0x7f, b'a'],                        // id length beyond the end
            [vec![FORMAT_V1, 0, 0, 0], vec![0xff; 9], vec![0x01]].concat(), // u64::MAX topics
            trailing,
            bad_utf8,
        ];
        for (i, case) in cases.into_iter().enumerate() {
            assert!(is_corrupt(decode(1, &case)), "case {i}");
        }
    }

    #[test]
    fn mutations_and_noise_never_panic() {
        let valid = encode(&sample(1));
        for i in 0..valid.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
                let mut damaged = valid.clone();
                damaged[i] = byte;
                let _ = decode(1, &damaged);
            }
        }
        // Deterministic noise (xorshift), version byte forced so decoding goes past the header.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let mut noise: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 * 8) & 0xff) as u8)
                .collect();
            if let Some(first) = noise.first_mut() {
                *first = FORMAT_V1;
            }
            let _ = decode(1, &noise);
        }
    }
}
