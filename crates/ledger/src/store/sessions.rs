//! Console sessions: what a signed-in operator's cookie stands for (their name, role and CSRF
//! token, as the API writes it), under the ledger's own tag with a time to live, so that every
//! `serve` process behind a load balancer knows every session and signing out ends it everywhere.

use std::time::Duration;

use redis::AsyncCommands;

use crate::error::LedgerError;
use crate::store::Ledger;
use crate::store::keys::Keys;

impl Ledger {
    fn session_key(&self, id: &str) -> String {
        format!("{}:session:{id}", Keys::new(&self.config.namespace, &self.config.tag).prefix())
    }

    /// Keeps session `id` (an unguessable id the caller made) holding `value` for `ttl`.
    pub async fn put_session(&self, id: &str, value: &str, ttl: Duration) -> Result<(), LedgerError> {
        let ttl = ttl.as_millis().clamp(1_000, u128::from(u32::MAX)) as u64;
        let _: () = redis::cmd("SET")
            .arg(self.session_key(id))
            .arg(value)
            .arg("PX")
            .arg(ttl)
            .query_async(&mut self.con.clone())
            .await?;
        Ok(())
    }

    /// What session `id` holds, while it lasts.
    pub async fn session(&self, id: &str) -> Result<Option<String>, LedgerError> {
        Ok(self.con.clone().get(self.session_key(id)).await?)
    }

    /// Ends session `id`.
    pub async fn drop_session(&self, id: &str) -> Result<(), LedgerError> {
        let _: () = self.con.clone().del(self.session_key(id)).await?;
        Ok(())
    }
}
