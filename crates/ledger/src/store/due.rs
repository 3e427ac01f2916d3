//! The due-index: bringing an enquiry forward, its depth, and waiting for producers' wake-ups.

use std::time::Duration;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::store::Ledger;
use crate::store::args::script_args;
use crate::store::script::EXPEDITE;

script_args! {
    /// What `expedite.lua` takes.
    pub struct ExpediteArgs<'a> { id: &'a str, now: i64 }
}

impl Ledger {
    /// Makes a `pending` refund's enquiry due now (QFPay notified an outcome). `Ok(false)`: there
    /// was nothing to bring forward (unknown, not pending, held, or already due).
    pub async fn expedite(&self, merchant: &str, out_trade_no: &str) -> Result<bool, LedgerError> {
        let Some(rec) = self.get(merchant, out_trade_no).await? else { return Ok(false) };
        let mut inv = self.on_record(&EXPEDITE, &rec.merchant, &rec.id, &rec.syssn);
        ExpediteArgs { id: &rec.id, now: self.now_ms() }.push(&mut inv);
        let reply: Vec<String> = inv.invoke_async(&mut self.con.clone()).await?;
        let done = reply.first().is_some_and(|r| r == "ok");
        if done {
            self.wake(self.shard_of(&rec.merchant)).await;
        }
        Ok(done)
    }

    /// Number of refunds waiting in the due-index (due now or later) or on the ready list, every
    /// shard.
    pub async fn due_len(&self) -> Result<u64, LedgerError> {
        let mut total = 0;
        for shard in 0..self.shard_count() {
            total += self.con.clone().zcard::<_, u64>(self.shard_keys(shard).due()).await?;
            total += self.ready_len(shard).await?;
        }
        Ok(total)
    }

    /// A waiter for producers' wake-ups in `shards`, on a subscription of its own.
    pub fn waiter(&self, shards: &[usize]) -> Waiter {
        Waiter {
            endpoint: self.con.endpoint().clone(),
            channels: shards.iter().map(|s| self.shard_keys(*s).wake()).collect(),
            messages: None,
            quiet: 0,
        }
    }
}

/// Timed-out waits in a row after which a subscription is opened again (see `Waiter::quiet`).
const QUIET_BEFORE_RESUBSCRIBE: u32 = 6;

/// Waits until a producer says there is work (see `Ledger::wake`), something local asks for a
/// look, or a time passes.
///
/// Wake-ups are published on a channel under each shard's hash tag. A wake-up published while
/// nobody listens is lost, which is harmless: a waiter that (re)subscribes answers "woken" once, so
/// its worker fetches straight away, and every wait ends at the earliest due time anyway.
pub struct Waiter {
    endpoint: crate::store::conn::Endpoint,
    channels: Vec<String>,
    messages: Option<redis::aio::PubSubStream>,
    /// Waits in a row that ended without a message: a subscription whose connection died silently
    /// (no reset ever came) would look like that, so after a few it is opened again.
    quiet: u32,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter").field("channels", &self.channels).finish_non_exhaustive()
    }
}

impl Waiter {
    /// Waits at most `max`, or until `nudge` is notified; `true` if a producer's wake-up (or a
    /// fresh subscription) ended it. Redis errors are not returned: the subscription is opened
    /// again on the next call (with Sentinel, at the current primary).
    pub async fn wait(&mut self, max: Duration, nudge: &tokio::sync::Notify) -> bool {
        use futures_util::{FutureExt, StreamExt};
        if self.messages.is_none() {
            self.messages = self.subscribe().await;
            if self.messages.is_some() {
                return true;
            }
        }
        let Some(messages) = self.messages.as_mut() else {
            tokio::select! {
                () = tokio::time::sleep(max.min(Duration::from_millis(500))) => {}
                () = nudge.notified() => {}
            }
            return false;
        };
        let woke = tokio::select! {
            m = messages.next() => match m {
                Some(_) => true,
                None => {
                    self.messages = None;
                    return false;
                }
            },
            () = tokio::time::sleep(max) => {
                self.quiet += 1;
                if self.quiet >= QUIET_BEFORE_RESUBSCRIBE {
                    self.quiet = 0;
                    self.messages = None;
                    return false;
                }
                false
            }
            () = nudge.notified() => false,
        };
        if woke {
            self.quiet = 0;
        }
        // One look serves every wake-up that is already here.
        while let Some(Some(_)) = messages.next().now_or_never() {}
        woke
    }

    async fn subscribe(&self) -> Option<redis::aio::PubSubStream> {
        let open = async {
            // With Redis Cluster, any node will do: a PUBLISH reaches every node of the cluster.
            let (_, client) = self.endpoint.client().await.ok()?;
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&self.channels).await.ok()?;
            Some(pubsub.into_on_message())
        };
        tokio::time::timeout(Duration::from_secs(3), open).await.ok().flatten()
    }
}
