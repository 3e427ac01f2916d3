//! The due-index: feeding due refunds to apalis, bringing an enquiry forward, and its depth.

use std::time::Duration;

use redis::AsyncCommands;

use crate::claim::RefundRef;
use crate::error::LedgerError;
use crate::scripts::{EXPEDITE, FEED};
use crate::store::Ledger;

impl Ledger {
    /// Takes up to `limit` due refunds for delivery, holding each for `hold`, and names each one's
    /// payment and merchant (one pipelined read for the whole batch) so that its claim needs no
    /// read of its own. A refund whose record is gone is left out.
    pub async fn feed(&self, limit: usize, hold: Duration) -> Result<Vec<RefundRef>, LedgerError> {
        let mut inv = FEED.prepare_invoke();
        inv.key(self.keys.due()).arg(self.now_ms()).arg(limit).arg(hold.as_millis() as u64);
        let ids: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(self.keys.record(id)).arg("syssn").arg("merchant");
        }
        let named: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut self.con.clone()).await?;
        Ok(ids
            .into_iter()
            .zip(named)
            .filter_map(|(out_trade_no, pair)| match pair {
                (Some(syssn), Some(merchant)) => Some(RefundRef { out_trade_no, syssn, merchant }),
                _ => None,
            })
            .collect())
    }

    /// Makes a `pending` refund's enquiry due now (QFPay notified an outcome). `Ok(false)`: there
    /// was nothing to bring forward (unknown, not pending, held, or already due).
    pub async fn expedite(&self, out_trade_no: &str) -> Result<bool, LedgerError> {
        let Some(rec) = self.get(out_trade_no).await? else { return Ok(false) };
        let mut inv = self.on_record(&EXPEDITE, &rec.out_trade_no, &rec.syssn);
        inv.arg(out_trade_no).arg(self.now_ms());
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        let done = reply.first().is_some_and(|r| r == "ok");
        if done {
            self.wake().await;
        }
        Ok(done)
    }

    /// When the earliest refund in the due-index is due (ms), if any.
    pub async fn next_due(&self) -> Result<Option<i64>, LedgerError> {
        let first: Vec<(String, f64)> = self.con.clone().zrange_withscores(self.keys.due(), 0, 0).await?;
        Ok(first.first().map(|(_, score)| *score as i64))
    }

    /// Number of refunds waiting in the due-index (due now or later).
    pub async fn due_len(&self) -> Result<u64, LedgerError> {
        Ok(self.con.clone().zcard(self.keys.due()).await?)
    }

    /// Jobs waiting in apalis' ready list (fed, not yet fetched by a worker).
    pub async fn apalis_depth(&self) -> Result<u64, LedgerError> {
        let key = format!("{}:active", self.keys.apalis_queue());
        Ok(self.con.clone().llen(key).await?)
    }
}
