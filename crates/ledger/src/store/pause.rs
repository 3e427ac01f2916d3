//! Pausing and resuming a merchant's submits (operators, and workers on a configuration error):
//! the merchant's name is checked as a refund's is, and every pause and resume is in the audit
//! trail with who and why, written by the same script that changes the pause (`lua/pause.lua`).

use std::sync::LazyLock;

use redis::Script;

use crate::store::{Ledger, LedgerError};

static PAUSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("pause.lua")));

impl Ledger {
    /// Pauses a merchant's submits (enquiries go on). Refuses a name no refund could carry
    /// (the rule of [`crate::NewRefund`]'s `merchant`). Returns whether it was running before.
    pub async fn pause(&self, merchant: &str, who: &str, why: &str) -> Result<bool, LedgerError> {
        self.pause_or_resume("pause", merchant, who, why).await
    }

    /// Resumes a paused merchant. Returns whether it was paused.
    pub async fn resume(&self, merchant: &str, who: &str, why: &str) -> Result<bool, LedgerError> {
        self.pause_or_resume("resume", merchant, who, why).await
    }

    async fn pause_or_resume(&self, action: &str, merchant: &str, who: &str, why: &str) -> Result<bool, LedgerError> {
        qfpay::request::validate_id("merchant", merchant, 64)?;
        let changed: i64 = PAUSE
            .key(self.keys().paused())
            .key(self.keys().audit())
            .arg(action)
            .arg(merchant)
            .arg(who)
            .arg(why)
            .arg(self.now_ms())
            .invoke_async(&mut self.connection())
            .await?;
        Ok(changed == 1)
    }
}
