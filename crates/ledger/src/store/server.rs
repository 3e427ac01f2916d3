//! What the Redis server offers and whether qfrefund may run against it.

use crate::error::LedgerError;
use crate::store::Ledger;

/// What the Redis server offers and how it is set up, as far as the ledger cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: String,
    pub aof_enabled: bool,
    pub maxmemory_policy: String,
    /// `WAITAOF` exists (Redis ≥ 7.2): a claim can be made durable before anything is sent.
    pub waitaof: bool,
    /// `appendfsync` (`CONFIG GET`; `None` where a managed Redis refuses `CONFIG`).
    pub appendfsync: Option<String>,
    /// Replicas connected to this primary (`INFO replication` `connected_slaves`).
    pub connected_replicas: usize,
    /// `INFO memory`: bytes in use, and the limit (0: none set).
    pub used_memory: u64,
    pub maxmemory: u64,
}

impl ServerInfo {
    /// Why qfrefund must not run against this Redis, if it must not: an evicting memory policy
    /// (refund records and indexes silently dropped under memory pressure), or, when `require_aof`,
    /// no append-only file (a restart would forget claims, i.e. which refunds were already sent).
    /// Redis older than 7.0 lacks commands the ledger uses.
    pub fn refusal(&self, require_aof: bool) -> Option<String> {
        let major: u32 = self.version.split('.').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        if major < 7 {
            return Some(format!("Redis {} is too old: qfrefund needs Redis 7.0 or later", self.version));
        }
        if self.maxmemory_policy != "noeviction" {
            return Some(format!(
                "Redis maxmemory-policy is {}: Redis may evict refund records under memory pressure. Set maxmemory-policy noeviction",
                self.maxmemory_policy
            ));
        }
        if require_aof && !self.aof_enabled {
            return Some(
                "Redis has no append-only file (appendonly no): a Redis restart would forget which refunds were sent. \
                 Set appendonly yes (appendfsync everysec or always), or QFREFUND_REQUIRE_AOF=off for a throwaway setup"
                    .into(),
            );
        }
        None
    }
}

impl Ledger {
    /// Reads the server's version, persistence settings and replicas (from INFO, which managed
    /// Redis allows where CONFIG is disabled; `appendfsync` from CONFIG where allowed). With Redis
    /// Cluster: the primary that answers worst (see [`Ledger::server_infos`]).
    pub async fn server_info(&self) -> Result<ServerInfo, LedgerError> {
        if !matches!(self.con.endpoint(), crate::store::conn::Endpoint::Cluster(_)) {
            return info_of(&mut self.con.clone()).await;
        }
        let all = self.server_infos().await?;
        let worst = all
            .iter()
            .map(|(_, i)| i)
            .min_by_key(|i| (i.refusal(true).is_none(), i.aof_enabled, i.waitaof, i.connected_replicas));
        worst.cloned().ok_or_else(|| LedgerError::Script("the cluster reported no primary".into()))
    }

    /// [`ServerInfo`] of every primary (one for a single Redis or Sentinel's primary), each with
    /// its `host:port`.
    pub async fn server_infos(&self) -> Result<Vec<(String, ServerInfo)>, LedgerError> {
        let crate::store::conn::Endpoint::Cluster(_) = self.con.endpoint() else {
            return Ok(vec![(self.con.address(), info_of(&mut self.con.clone()).await?)]);
        };
        let mut out = Vec::new();
        for (name, client) in self.con.endpoint().primaries().await? {
            let mut con = client.get_multiplexed_async_connection().await?;
            out.push((name, info_of(&mut con).await?));
        }
        Ok(out)
    }
}

/// [`ServerInfo`] of the server `con` talks to.
async fn info_of(con: &mut impl redis::aio::ConnectionLike) -> Result<ServerInfo, LedgerError> {
    let info: String =
        redis::cmd("INFO").arg("server").arg("persistence").arg("memory").arg("replication").query_async(con).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let version = field("redis_version");
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    let at_least =
        |maj: u32, min: u32| (parts.first().copied().unwrap_or(0), parts.get(1).copied().unwrap_or(0)) >= (maj, min);
    // `CONFIG GET appendfsync`, or `None` where `CONFIG` is refused (managed Redis).
    let appendfsync: redis::RedisResult<Vec<String>> =
        redis::cmd("CONFIG").arg("GET").arg("appendfsync").query_async(con).await;
    Ok(ServerInfo {
        waitaof: at_least(7, 2),
        aof_enabled: field("aof_enabled") == "1",
        maxmemory_policy: field("maxmemory_policy"),
        connected_replicas: field("connected_slaves").parse().unwrap_or(0),
        appendfsync: appendfsync.ok().and_then(|kv| kv.get(1).cloned()),
        used_memory: field("used_memory").parse().unwrap_or(0),
        maxmemory: field("maxmemory").parse().unwrap_or(0),
        version,
    })
}
