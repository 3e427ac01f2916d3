//! The archive: where final refunds go before retention removes them from Redis, and where an
//! archived refund is read back from.
//!
//! A sink is chosen by a URL (setting `archive`): `file:///path` writes daily JSON Lines files
//! per shard, zstd-compressed, each with a manifest (see [`file`]); `postgres://…` writes tables
//! `refunds` and `refund_events` of a PostgreSQL database (see [`postgres`]). Every line is one refund
//! ([`ArchivedRefund`]): every field of its record as Redis held it, and its timeline. A write
//! returns only once the lines are on disk (fsynced) and the manifest says so: only then may the
//! caller remove the refunds from Redis. Writing the same refunds again (a crash between the
//! archive and the removal) never writes a line twice.

pub mod file;
pub mod postgres;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ledger::State;
use ledger::refund::timeline::TimelineEntry;
use ledger::store::retention::Retained;
use serde::{Deserialize, Serialize};

/// The line format's version (a reader refuses one it does not know).
pub const FORMAT: u32 = 1;

/// One archived refund: one line of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedRefund {
    pub v: u32,
    pub shard: usize,
    pub merchant: String,
    pub out_trade_no: String,
    pub state: State,
    /// When it entered its final state (ms).
    pub final_at: i64,
    /// When it was archived (ms).
    pub archived_at: i64,
    /// Every field of its record, as stored: enough to restore it exactly.
    pub fields: BTreeMap<String, String>,
    /// Every transition, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// The evidence of every request sent for it (parameters, signature, HTTP status, the
    /// answer's body, times), oldest first.
    #[serde(default)]
    pub attempts: Vec<qfpay::Evidence>,
}

impl ArchivedRefund {
    pub fn of(r: &Retained, archived_at: i64) -> Self {
        Self {
            v: FORMAT,
            shard: r.shard,
            merchant: r.merchant.clone(),
            out_trade_no: r.out_trade_no.clone(),
            state: r.state,
            final_at: r.final_at,
            archived_at,
            fields: r.fields.clone(),
            timeline: r.timeline.clone(),
            attempts: r.attempts.clone(),
        }
    }

    /// What identifies it in the archive: (merchant, out_trade_no).
    pub fn key(&self) -> String {
        format!("{}\t{}", self.merchant, self.out_trade_no)
    }

    /// What identifies this version of it: a refund retried after it was archived, and final
    /// again, is archived again; so is one whose evidence grew meanwhile (a request fenced off
    /// while it waited keeps its evidence without changing the record).
    pub fn version_key(&self) -> String {
        format!("{}\t{}", self.legacy_version_key(), self.attempts.len())
    }

    /// The version key as the archive's manifests held it before evidence counted.
    pub fn legacy_version_key(&self) -> String {
        format!("{}\t{}", self.key(), self.fields.get("updated_at").map(String::as_str).unwrap_or(""))
    }
}

/// A line of an archive file: what tells two versions of it apart (so a re-run writes none twice).
pub trait Line: Serialize + Send + Sync {
    fn version_key(&self) -> String;
    /// The key an earlier version wrote for the same line, if it differs.
    fn legacy_version_key(&self) -> Option<String> {
        None
    }
}

impl Line for ArchivedRefund {
    fn version_key(&self) -> String {
        ArchivedRefund::version_key(self)
    }
    fn legacy_version_key(&self) -> Option<String> {
        Some(ArchivedRefund::legacy_version_key(self))
    }
}

/// One entry of a shard's audit trail (an operator's action, or a merchant paused), archived
/// before the stream is trimmed after `audit_retention`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    pub v: u32,
    pub shard: usize,
    /// Its stream entry id (`<ms>-<seq>`): unique in its shard.
    pub id: String,
    /// Every field of the entry (out_trade_no, merchant, action, who, why, from, to, outcome, at).
    pub fields: BTreeMap<String, String>,
}

impl Line for AuditLine {
    fn version_key(&self) -> String {
        self.id.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive setting {0:?}: {1}")]
    Setting(String, String),
    #[error("archive {path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// The archive is not what its manifest says: nothing more is written there (and nothing
    /// removed from Redis) until a person has looked.
    #[error("archive {path}: {problem}")]
    Corrupt { path: String, problem: String },
    #[error("archive database {0}")]
    Database(String),
}

impl ArchiveError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), error }
    }
}

/// What one write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Lines written now.
    pub lines: u64,
    /// Refunds the archive already held from an earlier write (not written again).
    pub already: u64,
}

/// An archive sink.
#[derive(Debug)]
pub enum Sink {
    File(file::FileSink),
    Postgres(postgres::PgSink),
}

impl Sink {
    /// The sink an `archive` setting names: `file:///absolute/path` (or a bare absolute path).
    pub fn from_setting(setting: &str) -> Result<Self, ArchiveError> {
        let bad = |why: &str| ArchiveError::Setting(postgres::redact(setting), why.to_owned());
        let path = match setting.split_once("://") {
            Some(("file", rest)) => rest,
            Some(("postgres" | "postgresql", _)) => {
                // Parsed now, so that a bad URL is refused at start-up, not at the first archiving.
                setting
                    .parse::<tokio_postgres::Config>()
                    .map_err(|e| ArchiveError::Setting(postgres::redact(setting), e.to_string()))?;
                return Ok(Sink::Postgres(postgres::PgSink::new(setting.to_owned())));
            }
            Some((scheme, _)) => {
                return Err(bad(&format!("unknown scheme {scheme:?} (file:///path or postgres://…)")));
            }
            None => setting,
        };
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(bad("the path must be absolute (file:///var/lib/qfrefund/archive)"));
        }
        Ok(Sink::File(file::FileSink::new(path)))
    }

    /// Writes `batch` (refunds of `shard`) durably into the file of `day` (`YYYY-MM-DD`).
    pub async fn write(&self, shard: usize, day: &str, batch: Vec<ArchivedRefund>) -> Result<Written, ArchiveError> {
        match self {
            Sink::File(f) => f.write(shard, day, batch).await,
            Sink::Postgres(p) => p.write(batch).await,
        }
    }

    /// Writes audit-trail entries of `shard` durably (the file sink: into `day`'s audit file).
    pub async fn write_audit(&self, shard: usize, day: &str, batch: Vec<AuditLine>) -> Result<Written, ArchiveError> {
        match self {
            Sink::File(f) => f.write_audit(shard, day, batch).await,
            Sink::Postgres(p) => p.write_audit(batch).await,
        }
    }

    /// `merchant`'s archived refund `out_trade_no` of `shard`, archived on `day` (or the day
    /// before: a refund archived just before midnight is removed just after).
    pub async fn find(
        &self,
        shard: usize,
        day: &str,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<ArchivedRefund>, ArchiveError> {
        match self {
            Sink::File(f) => f.find(shard, day, merchant, out_trade_no).await,
            Sink::Postgres(p) => p.find(merchant, out_trade_no).await,
        }
    }

    /// Where it writes, for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            Sink::File(f) => format!("file://{}", f.root().display()),
            Sink::Postgres(p) => p.describe(),
        }
    }
}
