//! Trimming the streams by age. The outcome streams: entries older than the retention go, but never one a
//! consumer group has not finished with (read and acknowledged, or not yet read), so a webhook
//! (or any consumer's group) never loses an outcome to trimming. A webhook delivery that failed
//! keeps its own copy on the retry schedule (`store::webhooks`), so it does not hold the stream.
//!
//! Each call trims at most [`TRIM_LIMIT`] entries (`XTRIM MINID ~ … LIMIT`: whole stream nodes,
//! bounded work), so a backlog of old entries (a first run after an upgrade) goes over several
//! calls, none holding Redis for long. The audit trails: only what the archive holds (see
//! [`Ledger::audit_past`]), after `audit_retention`.

use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply};

use crate::error::LedgerError;
use crate::store::Ledger;

/// Entries one trim may remove.
pub const TRIM_LIMIT: usize = 10_000;

/// A stream id as numbers; `None` for an empty or unreadable one.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl Ledger {
    /// Trims shard `shard`'s outcome stream of the entries older than `retention` that every
    /// consumer group has finished with; returns how many went.
    pub async fn trim_events(&self, shard: usize, retention: Duration) -> Result<u64, LedgerError> {
        let mut con = self.con.clone();
        let key = self.shard_keys(shard).events();
        let age = (self.now_ms() - retention.as_millis() as i64).max(0) as u64;
        let mut keep_from = (age, 0u64);
        let groups: StreamInfoGroupsReply = match con.xinfo_groups(&key).await {
            Ok(g) => g,
            // No stream yet ("ERR no such key"): nothing to trim. One created between the two
            // commands (the first enqueue of a new ledger) is read again.
            Err(_) if !con.exists::<_, bool>(&key).await? => return Ok(0),
            Err(_) => con.xinfo_groups(&key).await?,
        };
        for g in groups.groups {
            // Entries after the last one handed to the group are not read yet; of those read, the
            // oldest not acknowledged is the first to keep.
            let first_unfinished = if g.pending > 0
                && let StreamPendingReply::Data(p) = con.xpending(&key, &g.name).await?
            {
                parse_id(&p.start_id)
            } else {
                parse_id(&g.last_delivered_id)
                    .map(|(ms, seq)| if seq == u64::MAX { (ms + 1, 0) } else { (ms, seq + 1) })
            };
            // An unreadable position keeps everything.
            let first = first_unfinished.unwrap_or((0, 0));
            if first < (age, 0) {
                // A group nobody reads any more (a merchant's webhook removed for good, an old
                // version's group) holds the stream: say so, it is the operator's to delete.
                tracing::warn!(
                    stream = %key,
                    group = %g.name,
                    "a consumer group holds outcome entries older than the retention: the stream cannot be trimmed past them \
                     (XGROUP DESTROY it if nobody reads it any more)"
                );
            }
            keep_from = keep_from.min(first);
        }
        if keep_from == (0, 0) {
            return Ok(0);
        }
        let trimmed: u64 = redis::cmd("XTRIM")
            .arg(&key)
            .arg("MINID")
            .arg("~")
            .arg(format!("{}-{}", keep_from.0, keep_from.1))
            .arg("LIMIT")
            .arg(TRIM_LIMIT)
            .query_async(&mut con)
            .await?;
        Ok(trimmed)
    }

    /// Up to `limit` entries of shard `shard`'s audit trail older than `retention`, oldest first
    /// (id, fields): what must be archived before [`Ledger::trim_audit`] may remove them.
    pub async fn audit_past(
        &self,
        shard: usize,
        retention: Duration,
        limit: usize,
    ) -> Result<Vec<(String, std::collections::BTreeMap<String, String>)>, LedgerError> {
        let cutoff = self.now_ms() - retention.as_millis() as i64;
        if cutoff <= 0 {
            return Ok(Vec::new());
        }
        let reply: redis::streams::StreamRangeReply = self
            .con
            .clone()
            .xrange_count(self.shard_keys(shard).audit(), "-", format!("{}", cutoff - 1), limit)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|e| {
                let fields = e
                    .map
                    .iter()
                    .filter_map(|(k, v)| redis::from_redis_value_ref::<String>(v).ok().map(|v| (k.clone(), v)))
                    .collect();
                (e.id, fields)
            })
            .collect())
    }

    /// Removes shard `shard`'s audit entries up to and including `through` (an entry id the
    /// archive now holds, and every one before it).
    pub async fn trim_audit(&self, shard: usize, through: &str) -> Result<u64, LedgerError> {
        let Some((ms, seq)) = parse_id(through) else {
            return Err(LedgerError::Script(format!("not a stream id: {through:?}")));
        };
        let next = if seq == u64::MAX { format!("{}-0", ms + 1) } else { format!("{ms}-{}", seq + 1) };
        let trimmed: u64 = redis::cmd("XTRIM")
            .arg(self.shard_keys(shard).audit())
            .arg("MINID")
            .arg(next)
            .query_async(&mut self.con.clone())
            .await?;
        Ok(trimmed)
    }
}
