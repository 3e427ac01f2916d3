//! Pausing and resuming a merchant's submits (operators, and workers on a configuration error):
//! the merchant's name is checked as a refund's is, and every pause and resume is in the audit
//! trail with who and why, written by the same script that changes the pause (`lua/pause.lua`).

use std::sync::LazyLock;

use redis::Script;

use crate::store::args::script_args;
use crate::store::{Ledger, LedgerError};

script_args! {
    /// What `pause.lua` takes.
    pub struct PauseArgs<'a> { action: &'a str, merchant: &'a str, who: &'a str, why: &'a str, now: i64 }
}

static PAUSE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{}\n{}", PauseArgs::lua_prelude(), include_str!("pause.lua"))));

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
        let shard = self.shard_of(merchant);
        let mut inv = PAUSE.prepare_invoke();
        inv.key(self.shard_keys(shard).paused()).key(self.shard_keys(shard).audit());
        PauseArgs { action, merchant, who, why, now: self.now_ms() }.push(&mut inv);
        let changed: i64 = inv.invoke_async(&mut self.con.clone()).await?;
        // A resumed merchant's refunds wait on their deferrals; idle workers look again now.
        if action == "resume" && changed == 1 {
            self.wake(shard).await;
        }
        Ok(changed == 1)
    }
}
