//! The checkpoint file format, apart from what the store decides to write: so that the bytes on
//! disk (and their compatibility across riffle versions) are defined in one place.
//!
//! Every file is `magic | format version | body | XXH3-64 of all before` (`seal` and
//! `open_sealed`), written to a temporary name, synced and renamed (`write_atomically_with`), so a
//! reader never sees half a file and detects any corruption. A part file's body is a bincode
//! `PartHeader` and the parts framed by hand; a manifest's body is a bincode `Manifest`.
//! Snapshot parts themselves are bincode ([`encode`], [`decode`]).
//!
//! The directory layout (`chk-<epoch>/<operator>.w<worker>.a<attempt>[.inc]`, `MANIFEST`,
//! `job.json`, `ATTEMPT`) is
//! here too: it is as much part of the format as the bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use riffle_core::{Error, Result};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::fingerprint::FINGERPRINT_FILE;
use crate::storage::Storage;
use crate::store::{Parts, SnapshotKind};

/// The magic of a part file.
pub(crate) const PART_MAGIC: &[u8; 4] = b"RFCK";
/// The magic of a manifest.
pub(crate) const MANIFEST_MAGIC: &[u8; 4] = b"RFMF";
/// The format version this build writes and reads.
pub(crate) const VERSION: u8 = 1;

/// The file of a checkpoint directory whose presence makes the checkpoint complete.
pub(crate) const MANIFEST_FILE: &str = "MANIFEST";
/// The suffix of incremental snapshot files.
pub(crate) const INCREMENTAL_SUFFIX: &str = ".inc";
/// The suffix of a file being written (see [`write_atomically_with`]).
const TMP_SUFFIX: &str = ".tmp";

/// A part file's header; the parts follow as `id: u32 LE | length: u64 LE | bytes` (framed by
/// hand: bincode would encode the bytes one by one).
#[derive(Serialize, Deserialize)]
pub(crate) struct PartHeader {
    /// The epoch of the snapshot.
    pub(crate) epoch: u64,
    /// The operator's name, as the store was given it (the file name is a safe version of it).
    pub(crate) operator: String,
    /// The worker that wrote it.
    pub(crate) worker: u32,
    /// How many parts follow.
    pub(crate) parts: u64,
}

/// A checkpoint's manifest: the part files a restore reads, oldest first.
#[derive(Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The checkpoint's epoch.
    pub(crate) epoch: u64,
    /// Files relative to the checkpoint directory.
    pub(crate) files: Vec<String>,
}

/// The name of the directory of `epoch`'s files, relative to the checkpoint directory.
pub(crate) fn epoch_dir_name(epoch: u64) -> String {
    format!("chk-{epoch:010}")
}

/// The epoch of a directory named by [`epoch_dir_name`]; `None` for any other name.
pub(crate) fn parse_epoch_dir(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// The manifest of checkpoint `epoch`, relative to the checkpoint location.
pub(crate) fn manifest_file(epoch: u64) -> String {
    epoch_file(epoch, MANIFEST_FILE)
}

/// The path, relative to the checkpoint directory, of the file `name` of epoch `epoch` (as
/// manifests list files).
pub(crate) fn epoch_file(epoch: u64, name: &str) -> String {
    format!("{}/{name}", epoch_dir_name(epoch))
}

/// Whether a file of an epoch directory holds operator parts (not the manifest, the
/// fingerprint, or a file still being written).
pub(crate) fn is_part_file(name: &str) -> bool {
    name != MANIFEST_FILE
        && name != FINGERPRINT_FILE
        && name != crate::fence::ATTEMPT_FILE
        && !name.ends_with(TMP_SUFFIX)
}

/// The name of the part file of `operator` on `worker`, made file-system safe.
pub(crate) fn part_file_name(operator: &str, worker: usize, kind: SnapshotKind, attempt: u64) -> String {
    let safe: String = operator
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match kind {
        SnapshotKind::Full => format!("{safe}.w{worker}.a{attempt}"),
        SnapshotKind::Incremental => format!("{safe}.w{worker}.a{attempt}{INCREMENTAL_SUFFIX}"),
    }
}

/// The attempt that wrote the part file `name` (see `crate::fence`); 0 for a file of a riffle
/// that did not number its attempts.
pub(crate) fn part_file_attempt(name: &str) -> u64 {
    let name = name.strip_suffix(INCREMENTAL_SUFFIX).unwrap_or(name);
    name.rsplit_once(".a").and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

/// `magic | version | body | XXH3-64 of all before`.
pub(crate) fn seal(magic: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 13);
    out.extend_from_slice(magic);
    out.push(VERSION);
    out.extend_from_slice(body);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// The body of a file [`seal`]ed with `magic`, checked (magic, version, checksum); `what` names
/// the file in errors.
pub(crate) fn open_sealed<'a>(magic: &[u8; 4], bytes: &'a [u8], what: &Path) -> Result<&'a [u8]> {
    let bad = |why: &str| Error::Execution(format!("checkpoint file {} is unusable: {why}", what.display()));
    if bytes.len() < 13 {
        return Err(bad("truncated"));
    }
    if &bytes[..4] != magic {
        return Err(bad("not a riffle checkpoint file"));
    }
    if bytes[4] != VERSION {
        return Err(bad(&format!(
            "format version {} (this build reads {VERSION})",
            bytes[4]
        )));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut s = [0u8; 8];
    s.copy_from_slice(sum);
    if xxh3_64(body) != u64::from_le_bytes(s) {
        return Err(bad("checksum mismatch (corrupt or truncated)"));
    }
    Ok(&body[5..])
}

/// Writes a file atomically with `fill`: a temporary file, filled, synced, then renamed.
pub(crate) fn write_atomically_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let io = |what: &'static str, source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot create", e))?;
    fill(&mut f).map_err(|e| io("cannot write", e))?;
    f.sync_all().map_err(|e| io("cannot sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename into", e))
}

/// A writer that checksums what passes through it (XXH3, as [`seal`] does).
struct Checksummed<W> {
    inner: W,
    sum: xxhash_rust::xxh3::Xxh3,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a part file's body (header, then each part framed) to `out`.
fn write_part_body(out: &mut impl Write, header: &PartHeader, parts: &[(u32, Vec<u8>)]) -> std::io::Result<()> {
    let head = bincode::serialize(header).map_err(std::io::Error::other)?;
    out.write_all(&(head.len() as u64).to_le_bytes())?;
    out.write_all(&head)?;
    for (id, bytes) in parts {
        out.write_all(&id.to_le_bytes())?;
        out.write_all(&(bytes.len() as u64).to_le_bytes())?;
        out.write_all(bytes)?;
    }
    Ok(())
}

/// Writes the part file `rel` whole, sealed as [`seal`] would with [`PART_MAGIC`] but streamed
/// into the file: the state is not copied twice more (body, sealed file) before it is written.
pub(crate) fn write_part_file(
    storage: &dyn Storage,
    rel: &str,
    header: &PartHeader,
    parts: &[(u32, Vec<u8>)],
) -> Result<()> {
    storage.put_with(rel, &mut |file| {
        let mut out = Checksummed {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            sum: xxhash_rust::xxh3::Xxh3::new(),
        };
        out.write_all(PART_MAGIC)?;
        out.write_all(&[VERSION])?;
        write_part_body(&mut out, header, parts)?;
        let sum = out.sum.digest();
        let mut file = out.inner;
        file.write_all(&sum.to_le_bytes())?;
        file.flush()
    })
}

/// Decodes a part file's body (what [`open_sealed`] returns); `path` names it in errors.
pub(crate) fn decode_part_file(body: &[u8], path: &Path) -> Result<(PartHeader, Parts)> {
    let bad = |why: String| Error::Execution(format!("checkpoint file {} is unusable: {why}", path.display()));
    let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= body.len())
            .ok_or_else(|| bad("truncated part".into()))?;
        let slice = &body[*at..end];
        *at = end;
        Ok(slice)
    };
    let mut at = 0usize;
    let u64_at = |at: &mut usize| -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(take(at, 8)?);
        Ok(u64::from_le_bytes(b))
    };
    let head_len = u64_at(&mut at)? as usize;
    let header: PartHeader = bincode::deserialize(take(&mut at, head_len)?).map_err(|e| bad(e.to_string()))?;
    let mut parts = Vec::with_capacity((header.parts as usize).min(1 << 20));
    for _ in 0..header.parts {
        let mut id = [0u8; 4];
        id.copy_from_slice(take(&mut at, 4)?);
        let len = u64_at(&mut at)? as usize;
        parts.push((u32::from_le_bytes(id), take(&mut at, len)?.to_vec()));
    }
    if at != body.len() {
        return Err(bad(format!("{} bytes after the last part", body.len() - at)));
    }
    Ok((header, parts))
}

/// Reads the part file `path`: its header and parts, checked.
pub(crate) fn read_part_file(storage: &dyn Storage, rel: &str) -> Result<(PartHeader, Parts)> {
    let bytes = read(storage, rel)?;
    let path = storage.show(rel);
    decode_part_file(open_sealed(PART_MAGIC, &bytes, &path)?, &path)
}

/// The sealed bytes of `manifest`.
pub(crate) fn seal_manifest(manifest: &Manifest) -> Result<Vec<u8>> {
    let body = bincode::serialize(manifest).map_err(|e| Error::Execution(format!("cannot encode a manifest: {e}")))?;
    Ok(seal(MANIFEST_MAGIC, &body))
}

/// Reads the manifest `rel`, checked.
pub(crate) fn read_manifest(storage: &dyn Storage, rel: &str) -> Result<Manifest> {
    let bytes = read(storage, rel)?;
    let path = storage.show(rel);
    bincode::deserialize(open_sealed(MANIFEST_MAGIC, &bytes, &path)?)
        .map_err(|e| Error::Execution(format!("manifest {} is unusable: {e}", path.display())))
}

/// The bytes of `rel`, which must exist.
pub(crate) fn read(storage: &dyn Storage, rel: &str) -> Result<Vec<u8>> {
    storage.get(rel)?.ok_or_else(|| Error::Io {
        what: "cannot read",
        path: storage.show(rel),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

/// Encodes a snapshot part (bincode).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| Error::Execution(format!("cannot encode a snapshot: {e}")))
}

/// Decodes a snapshot part written by [`encode`]; `operator` names it in errors.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], operator: &str) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| Error::Execution(format!("cannot decode the snapshot of {operator}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_opens_and_any_damage_is_named() {
        let path = Path::new("chk-0000000001/op.w0");
        let sealed = seal(PART_MAGIC, b"state");
        assert_eq!(open_sealed(PART_MAGIC, &sealed, path).expect("open"), b"state");
        let unusable = |bytes: &[u8], magic| open_sealed(magic, bytes, path).expect_err("unusable").to_string();
        assert!(unusable(&sealed, MANIFEST_MAGIC).contains("not a riffle checkpoint file"));
        assert!(unusable(&sealed[..12], PART_MAGIC).contains("truncated"));
        let mut flipped = sealed.clone();
        flipped[6] ^= 1;
        assert!(unusable(&flipped, PART_MAGIC).contains("checksum mismatch"));
        let mut newer = sealed;
        newer[4] = VERSION + 1;
        assert!(unusable(&newer, PART_MAGIC).contains("this build reads 1"));
    }

    #[test]
    fn a_part_file_reads_back_and_trailing_bytes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::storage::open(dir.path()).expect("storage");
        let path = dir.path().join("op.w3");
        let header = PartHeader {
            epoch: 4,
            operator: "op".into(),
            worker: 3,
            parts: 2,
        };
        let parts = vec![(7, vec![1, 2, 3]), (9, Vec::new())];
        write_part_file(&*storage, "op.w3", &header, &parts).expect("write");
        let (read_header, read_parts) = read_part_file(&*storage, "op.w3").expect("read");
        assert_eq!(
            (read_header.epoch, read_header.operator.as_str(), read_header.worker),
            (4, "op", 3)
        );
        assert_eq!(read_parts, parts);
        assert!(!dir.path().join("op.w3.tmp").exists());
        let body = open_sealed(PART_MAGIC, &read(&*storage, "op.w3").expect("bytes"), &path)
            .expect("open")
            .to_vec();
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_part_file(&longer, &path).is_err());
        assert!(decode_part_file(&body[..body.len() - 1], &path).is_err());
    }

    #[test]
    fn the_layout_names_round_trip() {
        assert_eq!(epoch_dir_name(7), "chk-0000000007");
        assert_eq!(parse_epoch_dir(&epoch_dir_name(7)), Some(7));
        assert_eq!(parse_epoch_dir("chk-x"), None);
        assert_eq!(parse_epoch_dir("out"), None);
        assert_eq!(epoch_file(7, "op.w0"), "chk-0000000007/op.w0");
        assert_eq!(
            part_file_name("Window 1/x", 2, SnapshotKind::Full, 3),
            "Window_1_x.w2.a3"
        );
        assert_eq!(part_file_name("op", 0, SnapshotKind::Incremental, 12), "op.w0.a12.inc");
        assert_eq!(part_file_attempt("op.w0.a12.inc"), 12);
        assert_eq!(part_file_attempt("Window_1_x.w2.a3"), 3);
        assert_eq!(part_file_attempt("op.w0.inc"), 0, "a file of a riffle without attempts");
        assert_eq!(part_file_attempt("op.w0"), 0);
        assert!(is_part_file("op.w0.inc"));
        assert!(!is_part_file(MANIFEST_FILE) && !is_part_file(FINGERPRINT_FILE) && !is_part_file("op.w0.tmp"));
    }
}
