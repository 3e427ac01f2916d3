//! The file sink: `<root>/shard-<n>/<YYYY-MM-DD>.jsonl.zst`, one file per shard and day, each
//! write appended as one zstd frame of JSON Lines (a zstd reader reads the frames as one
//! stream), and beside it `<YYYY-MM-DD>.manifest.json`: how many lines and bytes the file holds,
//! the sha256 of those bytes, and the refunds of the last write.
//!
//! The audit trail (operator actions) goes the same way into `shard-<n>/audit/`, one line per
//! entry, before the stream is trimmed.
//!
//! A write: the frame is appended and fsynced, then the manifest is replaced (written aside,
//! fsynced, renamed, the directory fsynced); only then does it return. Bytes past the manifest's
//! count are a write that never finished (a crash): the next write cuts them off, and the refunds
//! they held are still in Redis, to be written again. Refunds the last write of a shard holds
//! (a crash after it, before Redis removed them) are recognised and not written again. One
//! process writes a shard at a time (the ledger's archiver lease, and a lock on `shard-<n>/.lock`
//! for a writer stalled past its lease); readers may read any time.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ArchiveError, ArchivedRefund, AuditLine, FORMAT, Line, Written};

/// Where a shard's audit-trail files are, inside its directory.
const AUDIT_DIR: &str = "audit";

/// zstd's level: fast, and a refund line shrinks ~5×.
const LEVEL: i32 = 3;

/// What a day's file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub file: String,
    pub lines: u64,
    pub bytes: u64,
    /// Of the file's first `bytes` bytes, in hex.
    pub sha256: String,
    /// The refunds of the last write of this shard (merchant TAB out_trade_no TAB updated_at).
    pub last_batch: Vec<String>,
}

/// The file sink (see the module's documentation).
#[derive(Debug)]
pub struct FileSink {
    root: PathBuf,
    /// Per file: the bytes hashed so far and the hash state, so a write hashes only its frame.
    hashes: Arc<Mutex<HashMap<PathBuf, (u64, Sha256)>>>,
}

/// What `verify` found of one day's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub file: PathBuf,
    pub lines: u64,
    /// Bytes past the manifest's count (a write that never finished; cut off by the next write).
    pub unfinished: u64,
}

impl FileSink {
    pub fn new(root: PathBuf) -> Self {
        Self { root, hashes: Arc::default() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn shard_dir(&self, shard: usize) -> PathBuf {
        self.root.join(format!("shard-{shard}"))
    }

    pub(crate) async fn write(
        &self,
        shard: usize,
        day: &str,
        batch: Vec<ArchivedRefund>,
    ) -> Result<Written, ArchiveError> {
        let dir = self.shard_dir(shard);
        let day = day.to_owned();
        let hashes = self.hashes.clone();
        blocking(move || append(&dir, &day, &batch, &hashes)).await
    }

    pub(crate) async fn write_audit(
        &self,
        shard: usize,
        day: &str,
        batch: Vec<AuditLine>,
    ) -> Result<Written, ArchiveError> {
        let dir = self.shard_dir(shard).join(AUDIT_DIR);
        let day = day.to_owned();
        let hashes = self.hashes.clone();
        blocking(move || append(&dir, &day, &batch, &hashes)).await
    }

    pub(crate) async fn find(
        &self,
        shard: usize,
        day: &str,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<ArchivedRefund>, ArchiveError> {
        let dir = self.shard_dir(shard);
        let (day, key) = (day.to_owned(), format!("{merchant}\t{out_trade_no}"));
        blocking(move || {
            let mut days = vec![day.clone()];
            days.extend(previous_day(&day));
            for d in days {
                let found = read_lines(&dir, &d)?.into_iter().rev().find(|r| r.key() == key);
                if found.is_some() {
                    return Ok(found);
                }
            }
            Ok(None)
        })
        .await
    }

    /// Checks every day's file of every shard against its manifest: its bytes, their sha256,
    /// and the lines they decode to.
    pub fn verify(&self) -> Result<Vec<Verified>, ArchiveError> {
        let mut out = Vec::new();
        let shards = match fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(ArchiveError::io(&self.root, e)),
        };
        let mut dirs: Vec<PathBuf> = shards.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        // Each shard's audit files are in an `audit` directory of its own.
        let audit: Vec<PathBuf> = dirs.iter().map(|d| d.join(AUDIT_DIR)).filter(|d| d.is_dir()).collect();
        dirs.extend(audit);
        for dir in dirs {
            for day in manifest_days(&dir)? {
                let m = load_manifest(&dir, &day)?;
                let path = dir.join(&m.file);
                let bytes = read_prefix(&path, m.bytes)?;
                let corrupt = |problem: String| ArchiveError::Corrupt { path: path.display().to_string(), problem };
                let sha = hex(&Sha256::digest(&bytes));
                if sha != m.sha256 {
                    return Err(corrupt(format!("sha256 {sha}, the manifest says {}", m.sha256)));
                }
                let lines = decode_values(&path, &bytes)?.len() as u64;
                if lines != m.lines {
                    return Err(corrupt(format!("{lines} lines, the manifest says {}", m.lines)));
                }
                let len = fs::metadata(&path).map_err(|e| ArchiveError::io(&path, e))?.len();
                out.push(Verified { file: path, lines, unfinished: len.saturating_sub(m.bytes) });
            }
        }
        Ok(out)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ArchiveError> + Send + 'static,
) -> Result<T, ArchiveError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArchiveError::Corrupt { path: String::new(), problem: format!("the archive task failed: {e}") })?
}

fn file_name(day: &str) -> String {
    format!("{day}.jsonl.zst")
}

fn manifest_path(dir: &Path, day: &str) -> PathBuf {
    dir.join(format!("{day}.manifest.json"))
}

fn load_manifest(dir: &Path, day: &str) -> Result<Manifest, ArchiveError> {
    let path = manifest_path(dir, day);
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| ArchiveError::Corrupt { path: path.display().to_string(), problem: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Manifest { file: file_name(day), ..Manifest::default() })
        }
        Err(e) => Err(ArchiveError::io(&path, e)),
    }
}

/// The days that have a manifest in `dir`, oldest first.
fn manifest_days(dir: &Path) -> Result<Vec<String>, ArchiveError> {
    let mut days: Vec<String> = match fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".manifest.json")).map(str::to_owned))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ArchiveError::io(dir, e)),
    };
    days.sort();
    Ok(days)
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ArchiveError::io(dir, e))
}

fn append<L: Line>(
    dir: &Path,
    day: &str,
    batch: &[L],
    hashes: &Mutex<HashMap<PathBuf, (u64, Sha256)>>,
) -> Result<Written, ArchiveError> {
    fs::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
    // One writer per shard directory at a time, whatever the workers' leases say (a worker
    // stalled past its lease may still be writing): held until the manifest is in place.
    let lock_path = dir.join(".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| ArchiveError::io(&lock_path, e))?;
    lock.lock().map_err(|e| ArchiveError::io(&lock_path, e))?;
    let mut m = load_manifest(dir, day)?;
    // The shard's last write may be in an earlier day's file (a crash before midnight).
    let latest = manifest_days(dir)?.into_iter().next_back();
    let last = match latest {
        Some(d) if d != day => load_manifest(dir, &d)?.last_batch,
        _ => m.last_batch.clone(),
    };
    let already: HashSet<&str> = last.iter().map(String::as_str).collect();
    let fresh: Vec<&L> = batch
        .iter()
        .filter(|r| {
            !already.contains(r.version_key().as_str())
                && !r.legacy_version_key().is_some_and(|k| already.contains(k.as_str()))
        })
        .collect();
    let written = Written { lines: fresh.len() as u64, already: (batch.len() - fresh.len()) as u64 };
    let path = dir.join(&m.file);
    let corrupt = |problem: String| ArchiveError::Corrupt { path: path.display().to_string(), problem };
    let created = !path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| ArchiveError::io(&path, e))?;
    let len = f.metadata().map_err(|e| ArchiveError::io(&path, e))?.len();
    if len < m.bytes {
        return Err(corrupt(format!("{len} bytes, shorter than the {} its manifest counts", m.bytes)));
    }
    if len > m.bytes {
        // A write that never finished: its refunds are still in Redis.
        f.set_len(m.bytes).and_then(|()| f.sync_data()).map_err(|e| ArchiveError::io(&path, e))?;
    }
    if fresh.is_empty() {
        return Ok(written);
    }
    let mut jsonl = Vec::new();
    for r in &fresh {
        serde_json::to_writer(&mut jsonl, r).map_err(|e| corrupt(e.to_string()))?;
        jsonl.push(b'\n');
    }
    let frame = zstd::encode_all(&jsonl[..], LEVEL).map_err(|e| ArchiveError::io(&path, e))?;
    f.seek(SeekFrom::Start(m.bytes))
        .and_then(|_| f.write_all(&frame))
        .and_then(|()| f.sync_data())
        .map_err(|e| ArchiveError::io(&path, e))?;
    if created {
        sync_dir(dir)?;
    }
    let mut cache = hashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut hasher = match cache.remove(&path) {
        Some((n, h)) if n == m.bytes => h,
        _ => Sha256::new().chain_update(read_prefix(&path, m.bytes)?),
    };
    hasher.update(&frame);
    m.lines += written.lines;
    m.bytes += frame.len() as u64;
    m.sha256 = hex(&hasher.clone().finalize());
    m.last_batch = batch.iter().map(Line::version_key).collect();
    let tmp = dir.join(format!(".{day}.manifest.json.tmp"));
    let body = serde_json::to_vec_pretty(&m).map_err(|e| corrupt(e.to_string()))?;
    File::create(&tmp)
        .and_then(|mut t| t.write_all(&body).and_then(|()| t.sync_all()))
        .and_then(|()| fs::rename(&tmp, manifest_path(dir, day)))
        .map_err(|e| ArchiveError::io(&tmp, e))?;
    sync_dir(dir)?;
    cache.insert(path, (m.bytes, hasher));
    drop(lock);
    Ok(written)
}

fn read_prefix(path: &Path, bytes: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::new();
    match File::open(path) {
        Ok(f) => f.take(bytes).read_to_end(&mut out).map_err(|e| ArchiveError::io(path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && bytes == 0 => 0,
        Err(e) => return Err(ArchiveError::io(path, e)),
    };
    Ok(out)
}

/// The lines of a file's vouched-for bytes, as JSON, each of a format this version reads.
fn decode_values(path: &Path, bytes: &[u8]) -> Result<Vec<serde_json::Value>, ArchiveError> {
    let corrupt = |problem: String| ArchiveError::Corrupt { path: path.display().to_string(), problem };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let text = zstd::decode_all(bytes).map_err(|e| corrupt(format!("not zstd: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| corrupt(format!("line {}: {e}", i + 1)))?;
        if v["v"].as_u64() != Some(u64::from(FORMAT)) {
            return Err(corrupt(format!("line {}: format {} (this version reads {FORMAT})", i + 1, v["v"])));
        }
        out.push(v);
    }
    Ok(out)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<ArchivedRefund>, ArchiveError> {
    let corrupt = |problem: String| ArchiveError::Corrupt { path: path.display().to_string(), problem };
    decode_values(path, bytes)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| serde_json::from_value(v).map_err(|e| corrupt(format!("line {}: {e}", i + 1))))
        .collect()
}

/// The lines of `day`'s file in `dir` that its manifest vouches for.
fn read_lines(dir: &Path, day: &str) -> Result<Vec<ArchivedRefund>, ArchiveError> {
    let m = load_manifest(dir, day)?;
    let path = dir.join(&m.file);
    decode(&path, &read_prefix(&path, m.bytes)?)
}

fn previous_day(day: &str) -> Option<String> {
    let mut p = day.splitn(3, '-');
    let (y, m, d) = (p.next()?.parse().ok()?, p.next()?.parse().ok()?, p.next()?.parse().ok()?);
    Some(ledger::refund::tombstone::date_of_day(qfpay::time::days_from_civil(y, m, d) - 1))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_before() {
        assert_eq!(previous_day("2026-03-01").as_deref(), Some("2026-02-28"));
        assert_eq!(previous_day("2024-03-01").as_deref(), Some("2024-02-29"));
        assert_eq!(previous_day("2027-01-01").as_deref(), Some("2026-12-31"));
        assert_eq!(previous_day("not a day"), None);
    }
}
