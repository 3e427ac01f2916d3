//! The archiving lease: one worker archives a shard at a time.

use std::time::Duration;

use crate::error::LedgerError;
use crate::store::Ledger;

impl Ledger {
    /// Takes (or keeps) the archiving of `shard` for `owner` for `ttl`: false while another
    /// worker holds it. Renew it before each batch.
    pub async fn take_archiver(&self, shard: usize, owner: &str, ttl: Duration) -> Result<bool, LedgerError> {
        static TAKE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local cur = redis.call('GET', KEYS[1])
                 if cur and cur ~= ARGV[1] then return 0 end
                 redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                 return 1",
            )
        });
        let ok: i64 = TAKE
            .key(self.shard_keys(shard).archiver())
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.con.clone())
            .await?;
        Ok(ok == 1)
    }

    /// Gives the archiving of `shard` up, if `owner` holds it (at shutdown: another worker
    /// takes over at once).
    pub async fn release_archiver(&self, shard: usize, owner: &str) -> Result<(), LedgerError> {
        static GIVE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1")
        });
        let _: i64 = GIVE.key(self.shard_keys(shard).archiver()).arg(owner).invoke_async(&mut self.con.clone()).await?;
        Ok(())
    }
}
