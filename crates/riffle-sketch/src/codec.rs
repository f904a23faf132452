//! The byte envelope every sketch serialises into.
//!
//! Checkpoints (issue 5) store sketches as bytes and must never load garbage. A sketch's bytes
//! are wrapped as
//!
//! ```text
//! "RFSK" | kind: u8 | version: u8 | payload length: u32 LE | payload | XXH3-64 of all before: u64 LE
//! ```
//!
//! so that a truncated, corrupted or foreign buffer is rejected with a [`DecodeError`] before
//! the payload's own decoder sees it, and the format can evolve (the version byte).
//!
//! ```
//! use riffle_sketch::codec::{open, seal, SketchKind};
//! let bytes = seal(SketchKind::HyperLogLog, 1, b"payload");
//! assert_eq!(open(SketchKind::HyperLogLog, 1, &bytes).unwrap(), b"payload");
//! let mut corrupt = bytes.clone();
//! corrupt[12] ^= 1;
//! assert!(open(SketchKind::HyperLogLog, 1, &corrupt).is_err());
//! assert!(open(SketchKind::HyperLogLog, 1, &bytes[..bytes.len() - 1]).is_err());
//! ```

use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 4] = b"RFSK";
const HEADER: usize = 4 + 1 + 1 + 4;
const TRAILER: usize = 8;

/// Which sketch a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SketchKind {
    /// [`crate::CountingBloomFilter`].
    CountingBloom = 1,
    /// [`crate::HyperLogLog`].
    HyperLogLog = 2,
    /// [`crate::CountMinSketch`].
    CountMin = 3,
    /// [`crate::TopKSketch`].
    TopK = 4,
}

/// Why a buffer could not be decoded. Retrying does not help: the bytes are wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the envelope or its declared payload needs.
    #[error("{kind:?} sketch truncated: {len} bytes, {needed} needed")]
    Truncated {
        /// The expected sketch.
        kind: SketchKind,
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Not a Riffle sketch, or a different kind of sketch.
    #[error("not a {expected:?} sketch ({found})")]
    WrongKind {
        /// The expected sketch.
        expected: SketchKind,
        /// What was found instead.
        found: String,
    },
    /// A format version this build cannot read.
    #[error("{kind:?} sketch format version {version} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The sketch.
        kind: SketchKind,
        /// The buffer's version.
        version: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The checksum does not match: the bytes were corrupted.
    #[error("{kind:?} sketch is corrupt: checksum mismatch")]
    Checksum {
        /// The sketch.
        kind: SketchKind,
    },
    /// The payload passed the checksum but does not describe a valid sketch.
    #[error("{kind:?} sketch is invalid: {message}")]
    Invalid {
        /// The sketch.
        kind: SketchKind,
        /// What is wrong.
        message: String,
    },
}

/// Wraps `payload` in the envelope.
pub fn seal(kind: SketchKind, version: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.push(version);
    // Payloads are sketches: far below 4 GiB. A larger one would fail the length check on
    // decode rather than be misread.
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(payload);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Checks the envelope and returns the payload.
pub fn open(kind: SketchKind, version: u8, bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let truncated = |needed| DecodeError::Truncated {
        kind,
        len: bytes.len(),
        needed,
    };
    if bytes.len() < HEADER + TRAILER {
        return Err(truncated(HEADER + TRAILER));
    }
    if &bytes[..4] != MAGIC {
        return Err(DecodeError::WrongKind {
            expected: kind,
            found: "no Riffle sketch header".into(),
        });
    }
    if bytes[4] != kind as u8 {
        return Err(DecodeError::WrongKind {
            expected: kind,
            found: format!("sketch kind {}", bytes[4]),
        });
    }
    if bytes[5] != version {
        return Err(DecodeError::UnsupportedVersion {
            kind,
            version: bytes[5],
            supported: version,
        });
    }
    let len = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    let total = HEADER.saturating_add(len).saturating_add(TRAILER);
    if bytes.len() < total {
        return Err(truncated(total));
    }
    if bytes.len() > total {
        return Err(DecodeError::Invalid {
            kind,
            message: format!("{} trailing bytes", bytes.len() - total),
        });
    }
    let body = &bytes[..HEADER + len];
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&bytes[HEADER + len..]);
    if xxh3_64(body) != u64::from_le_bytes(sum) {
        return Err(DecodeError::Checksum { kind });
    }
    Ok(&body[HEADER..])
}

/// A little-endian reader over a payload that reports truncation as [`DecodeError`].
pub(crate) struct Reader<'a> {
    kind: SketchKind,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(kind: SketchKind, bytes: &'a [u8]) -> Self {
        Reader { kind, bytes }
    }

    pub(crate) fn invalid(&self, message: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            kind: self.kind,
            message: message.into(),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(self.invalid(format!("payload ends {} bytes early", n - self.bytes.len())));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub(crate) fn rest_len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.invalid(format!("{} unexpected bytes at the end", self.bytes.len())))
        }
    }
}

/// Serde support through the envelope: sketches travel between workers (and into
/// checkpoints) as their sealed bytes.
macro_rules! serde_via_bytes {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.to_bytes())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes = d.deserialize_byte_buf($crate::codec::BytesVisitor)?;
                <$t>::from_bytes(&bytes).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_bytes;

/// Accepts bytes however a format encodes them (as bytes or as a sequence of numbers).
pub(crate) struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sketch bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_and_every_single_bit_flip_is_rejected() {
        let bytes = seal(SketchKind::CountMin, 3, b"some payload bytes");
        for n in 0..bytes.len() {
            assert!(open(SketchKind::CountMin, 3, &bytes[..n]).is_err(), "prefix {n}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(open(SketchKind::CountMin, 3, &b).is_err(), "flip byte {i} bit {bit}");
            }
        }
        assert!(matches!(
            open(SketchKind::TopK, 3, &bytes),
            Err(DecodeError::WrongKind { .. })
        ));
        assert!(matches!(
            open(SketchKind::CountMin, 4, &bytes),
            Err(DecodeError::UnsupportedVersion { version: 3, .. })
        ));
    }
}
