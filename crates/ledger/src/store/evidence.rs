//! A refund's history: its timeline, and the evidence of every request sent for it (`<prefix>:e:<id>`, a list of JSON
//! `qfpay::Evidence`, oldest first): appended by the transition that records the request's
//! answer, or, when another worker had taken the refund over by then, on its own.

use std::collections::BTreeMap;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::refund::record::Record;
use crate::store::Ledger;

/// Evidence whose JSON does not read, kept whole in `body`.
fn unreadable(raw: &str) -> qfpay::Evidence {
    qfpay::Evidence {
        call: "unreadable".into(),
        sent_at: 0,
        took_ms: 0,
        params: BTreeMap::new(),
        sign_sha256: String::new(),
        sign_type: String::new(),
        http_status: None,
        body: Some(raw.to_owned()),
        body_truncated: false,
        error: Some("this attempt's evidence, as stored, is not readable JSON".into()),
        fenced_off: false,
    }
}

/// One stored attempt; one that does not read is kept whole as its body.
pub(crate) fn read(raw: &str) -> qfpay::Evidence {
    serde_json::from_str(raw).unwrap_or_else(|_| unreadable(raw))
}

impl Ledger {
    /// The evidence of every request sent for `merchant`'s refund `out_trade_no` (oldest first;
    /// empty for one archived: the archive has them).
    pub async fn attempts(&self, merchant: &str, out_trade_no: &str) -> Result<Vec<qfpay::Evidence>, LedgerError> {
        let Some(rec) = self.get(merchant, out_trade_no).await? else { return Ok(Vec::new()) };
        let raw: Vec<String> = self.con.clone().lrange(self.keys_for(merchant).evidence(&rec.id), 0, -1).await?;
        Ok(raw.iter().map(|e| read(e)).collect())
    }

    /// The timeline of `merchant`'s refund `out_trade_no`: every transition with QFPay's answer,
    /// oldest first (`None`: no such refund in Redis; an archived one's is in the archive).
    pub async fn timeline(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<Vec<crate::refund::timeline::TimelineEntry>>, LedgerError> {
        let Some(rec) = self.get(merchant, out_trade_no).await? else { return Ok(None) };
        let raw: Vec<String> = self.con.clone().lrange(self.keys_for(merchant).timeline(&rec.id), 0, -1).await?;
        if raw.is_empty() && rec.fresh {
            // Its timeline begins when it is settled (see `store::fresh`): until then, its enqueue.
            return Ok(Some(vec![crate::refund::timeline::TimelineEntry {
                at: rec.created_at,
                state: "queued".into(),
                respcd: None,
                resperr: None,
                refund_syssn: None,
                reason: None,
                last_error: None,
            }]));
        }
        Ok(Some(raw.iter().filter_map(|e| crate::refund::timeline::TimelineEntry::parse(e)).collect()))
    }

    /// Keeps the evidence of a request whose answer this worker could not record (it was fenced
    /// off: another worker holds the refund now), marked so. Returns false if the refund is no
    /// longer in Redis (archived meanwhile: the archive has what was recorded).
    pub async fn keep_fenced_off_evidence(
        &self,
        rec: &Record,
        evidence: &qfpay::Evidence,
    ) -> Result<bool, LedgerError> {
        static KEEP: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
                 if redis.call('LPOS', KEYS[2], ARGV[2]) then return 1 end
                 redis.call('RPUSH', KEYS[2], ARGV[1])
                 return 1",
            )
        });
        // Already there as recorded (the transition was applied after all; its answer was lost
        // and the retry found the refund moved on): not kept twice.
        let as_recorded = serde_json::to_string(evidence).map_err(|e| LedgerError::Script(e.to_string()))?;
        let e = qfpay::Evidence { fenced_off: true, ..evidence.clone() };
        let json = serde_json::to_string(&e).map_err(|e| LedgerError::Script(e.to_string()))?;
        let keys = self.keys_for(&rec.merchant);
        let kept: i64 = KEEP
            .key(keys.record(&rec.id))
            .key(keys.evidence(&rec.id))
            .arg(json)
            .arg(as_recorded)
            .invoke_async(&mut self.con.clone())
            .await?;
        Ok(kept == 1)
    }
}
