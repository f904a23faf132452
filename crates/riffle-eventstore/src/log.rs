//! The segment files: the log's only copy of the events.
//!
//! The log is a sequence of segment files `log-<first position>.seg`, each a sequence of
//! frames: `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`, one event per
//! frame. An append of several events writes them with one `write` and one fsync; the payload's
//! flag marks the last event of each append, so the recovery scan keeps whole appends only: it
//! reads frames in order and ends the log after the last one that closes an append and checks
//! out. What follows (a torn or half-written tail from a crash) is cut off.
//!
//! The format is hand-written rather than bincode's: the frame is the unit of the checksum and
//! of the scan, and decoding borrows from the read buffer.

use crate::{RecordedEvent, StoreError};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Bytes before a frame's payload: its length and its checksum.
pub(crate) const FRAME_HEADER: usize = 8;
/// The flag of the last event of an append.
const LAST_OF_APPEND: u8 = 1;
/// The largest payload the scan accepts (a length beyond it is damage, not an event).
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;

/// The name of the segment whose first event has `first_position`.
pub(crate) fn segment_path(dir: &Path, first_position: u64) -> PathBuf {
    dir.join(format!("log-{first_position:020}.seg"))
}

/// The segments in `dir`, by first position.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| StoreError::io("cannot list the event store directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("cannot list the event store directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = name.strip_prefix("log-").and_then(|n| n.strip_suffix(".seg")) {
            if let Ok(first) = first.parse::<u64>() {
                out.push((first, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The borrowed fields of an event to encode.
pub(crate) struct EventRef<'a> {
    pub position: u64,
    pub version: u64,
    pub timestamp: i64,
    pub id: Uuid,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub data: &'a str,
    pub metadata: &'a str,
}

/// Appends the frame of `e` to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, e: &EventRef<'_>, last_of_append: bool) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.push(if last_of_append { LAST_OF_APPEND } else { 0 });
    out.extend_from_slice(&e.position.to_le_bytes());
    out.extend_from_slice(&e.version.to_le_bytes());
    out.extend_from_slice(&e.timestamp.to_le_bytes());
    out.extend_from_slice(e.id.as_bytes());
    for s in [e.stream, e.event_type, e.data, e.metadata] {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let payload_len = out.len() - start - FRAME_HEADER;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What a look at the bytes at an offset found.
pub(crate) enum Frame {
    /// A whole frame that checks out: the event, whether it closes its append, its length
    /// with the header.
    Event(RecordedEvent, bool, usize),
    /// The bytes end before the frame does.
    Incomplete,
    /// The frame does not check out (bad length, checksum or fields).
    Damaged(String),
}

/// Decodes the frame at the start of `bytes`.
pub(crate) fn decode_frame(bytes: &[u8]) -> Frame {
    if bytes.len() < FRAME_HEADER {
        return Frame::Incomplete;
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > MAX_PAYLOAD {
        return Frame::Damaged(format!("frame length {len} is beyond the largest event"));
    }
    if bytes.len() < FRAME_HEADER + len {
        return Frame::Incomplete;
    }
    let payload = &bytes[FRAME_HEADER..FRAME_HEADER + len];
    if crc32fast::hash(payload) != crc {
        return Frame::Damaged("checksum mismatch".to_string());
    }
    match decode_payload(payload) {
        Ok((event, last)) => Frame::Event(event, last, FRAME_HEADER + len),
        Err(reason) => Frame::Damaged(reason),
    }
}

fn decode_payload(p: &[u8]) -> Result<(RecordedEvent, bool), String> {
    let mut r = Cursor { bytes: p, at: 0 };
    let flags = r.take(1)?[0];
    let position = r.u64()?;
    let version = r.u64()?;
    let timestamp = r.u64()? as i64;
    let id = Uuid::from_slice(r.take(16)?).map_err(|e| e.to_string())?;
    let stream = r.string("stream")?;
    let event_type = r.string("type")?;
    let data = r.string("data")?;
    let metadata = r.string("metadata")?;
    if r.at != p.len() {
        return Err(format!("{} bytes after the event's fields", p.len() - r.at));
    }
    Ok((
        RecordedEvent {
            stream,
            id,
            event_type,
            data,
            metadata,
            version,
            position,
            timestamp,
        },
        flags & LAST_OF_APPEND != 0,
    ))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("a field runs past the frame")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self, what: &str) -> Result<String, String> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    }
}

/// Reads a segment file from byte `from` to its end.
pub(crate) fn read_from(path: &Path, from: u64) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(from))?;
            f.read_to_end(&mut bytes)
        })
        .map_err(|e| StoreError::io("cannot read event store segment", path, e))?;
    Ok(bytes)
}

/// Syncs a directory, so that a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("cannot sync the event store directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(position: u64) -> EventRef<'static> {
        EventRef {
            position,
            version: 3,
            timestamp: 1_700_000_000_123,
            id: Uuid::from_u128(position as u128 + 1),
            stream: "account-7",
            event_type: "Deposited",
            data: r#"{"amount":5}"#,
            metadata: "{}",
        }
    }

    #[test]
    fn a_frame_round_trips() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &sample(9), true);
        let Frame::Event(e, last, len) = decode_frame(&buf) else {
            panic!("not decoded")
        };
        assert!(last);
        assert_eq!(len, buf.len());
        assert_eq!(
            (e.position, e.version, e.stream.as_str(), e.data.as_str()),
            (9, 3, "account-7", r#"{"amount":5}"#)
        );
        assert_eq!(e.id, Uuid::from_u128(10));
    }

    #[test]
    fn every_cut_of_a_frame_is_incomplete_and_every_flipped_byte_is_damage() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &sample(1), false);
        for cut in 0..buf.len() {
            assert!(matches!(decode_frame(&buf[..cut]), Frame::Incomplete), "cut at {cut}");
        }
        for at in 4..buf.len() {
            let mut bad = buf.clone();
            bad[at] ^= 0x40;
            assert!(matches!(decode_frame(&bad), Frame::Damaged(_)), "flip at {at}");
        }
    }
}
