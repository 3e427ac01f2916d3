//! Redis Cluster: `redis+cluster://[user:password@]host:port[,host:port…]` (`rediss+cluster://`
//! for TLS), through the redis crate's cluster client, which follows `MOVED` and `ASK` (a slot
//! being migrated) by itself. Every script of the ledger works inside one shard, whose keys share
//! one hash tag and so one slot; a pipeline is only ever sent for one shard.
//!
//! What has no key (the server checks, `TIME`) is asked of each primary on a connection of its
//! own ([`ClusterSpec::primaries`]); wake-ups are plain `PUBLISH`es, which a cluster forwards to
//! every node, so a waiter subscribes on any one node.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, Value};

use crate::store::LedgerError;
use crate::store::conn::{bad_url, user_info};

/// A parsed `redis+cluster://` URL.
pub struct ClusterSpec {
    /// `host:port` of each node given (the seeds: the cluster names the rest).
    pub nodes: Vec<(String, u16)>,
    /// Never printed.
    username: Option<String>,
    password: Option<String>,
    pub tls: bool,
    tls_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSpec").field("nodes", &self.nodes).field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl ClusterSpec {
    /// Parses `redis+cluster://[user:password@]h1:p1[,h2:p2…][/]`.
    pub fn parse(url: &str, tls_ca: Option<Vec<u8>>) -> Result<Self, LedgerError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis+cluster://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss+cluster://") {
            (true, r)
        } else {
            return Err(bad_url("expected redis+cluster:// or rediss+cluster://"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('?') {
            return Err(bad_url("a cluster URL names nodes only (Redis Cluster has one database)"));
        }
        let (username, password, hosts) = user_info(rest);
        let mut nodes = Vec::new();
        for h in hosts.split(',').filter(|h| !h.is_empty()) {
            let (host, port) = match h.rsplit_once(':') {
                Some((host, port)) => {
                    (host, port.parse::<u16>().map_err(|_| bad_url("a cluster node's port must be a number"))?)
                }
                None => (h, 6379),
            };
            nodes.push((host.to_owned(), port));
        }
        if nodes.is_empty() {
            return Err(bad_url("name at least one cluster node: redis+cluster://host:port,host:port"));
        }
        Ok(Self { nodes, username, password, tls, tls_ca })
    }

    fn info(&self, host: &str, port: u16) -> Result<ConnectionInfo, redis::RedisError> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure: false, tls_params: None }
        } else {
            ConnectionAddr::Tcp(host.to_owned(), port)
        };
        let mut settings = RedisConnectionInfo::default();
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.password {
            settings = settings.set_password(p);
        }
        Ok(addr.into_connection_info()?.set_redis_settings(settings))
    }

    /// A client of one node (not following the cluster): the checks, a subscription.
    pub fn node_client(&self, host: &str, port: u16) -> Result<redis::Client, redis::RedisError> {
        let info = self.info(host, port)?;
        match (&self.tls_ca, self.tls) {
            (Some(pem), true) => crate::store::conn::with_ca(info, pem),
            _ => redis::Client::open(info),
        }
    }

    /// The cluster client (it learns the slots from the seeds when it connects).
    pub fn client(&self, response_timeout: Duration) -> Result<ClusterClient, redis::RedisError> {
        let seeds = self.nodes.iter().map(|(h, p)| self.info(h, *p)).collect::<Result<Vec<_>, _>>()?;
        let b = ClusterClientBuilder::new(seeds)
            .connection_timeout(Duration::from_secs(3))
            .response_timeout(response_timeout)
            .retries(8)
            .max_retry_wait(1_000);
        #[cfg(feature = "tls")]
        let b = match (&self.tls_ca, self.tls) {
            (Some(pem), true) => b.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) }),
            _ => b,
        };
        #[cfg(not(feature = "tls"))]
        if self.tls_ca.is_some() && self.tls {
            return Err(crate::store::conn::no_tls());
        }
        b.build()
    }

    /// A client of the first seed that answers (a subscription needs just one node).
    pub async fn any_node(&self) -> Result<(String, redis::Client), redis::RedisError> {
        let mut last = None;
        for (h, p) in &self.nodes {
            let client = self.node_client(h, *p)?;
            let ping = async {
                let mut con = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut con).await
            };
            match tokio::time::timeout(Duration::from_millis(800), ping).await {
                Ok(Ok(())) => return Ok((format!("{h}:{p}"), client)),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(redis::RedisError::from((redis::ErrorKind::Io, "cluster node timed out"))),
            }
        }
        Err(last.unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no cluster node answered"))))
    }

    /// Clients of every primary, as the cluster itself reports them (`CLUSTER SLOTS` of the first
    /// node that answers).
    pub async fn primaries(&self) -> Result<Vec<(String, redis::Client)>, redis::RedisError> {
        let (_, client) = self.any_node().await?;
        let mut con = client.get_multiplexed_async_connection().await?;
        let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut con).await?;
        let mut out: Vec<(String, redis::Client)> = Vec::new();
        for range in slots {
            let Value::Array(parts) = range else { continue };
            let Some(Value::Array(primary)) = parts.get(2) else { continue };
            let host = match primary.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => continue,
            };
            let Some(Value::Int(port)) = primary.get(1) else { continue };
            let name = format!("{host}:{port}");
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, self.node_client(&host, *port as u16)?));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_parse_and_keep_their_secrets() {
        let s = ClusterSpec::parse("redis+cluster://:p%40ss@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3", None).unwrap();
        assert_eq!(s.nodes, [("10.0.0.1".into(), 7000), ("10.0.0.2".into(), 7001), ("10.0.0.3".into(), 6379)]);
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert!(!format!("{s:?}").contains("p@ss"));
        assert!(ClusterSpec::parse("rediss+cluster://h:1", None).unwrap().tls);
        for bad in ["redis+cluster://", "redis+cluster://h:x", "redis+cluster://h:1/2", "redis://h:1"] {
            assert!(ClusterSpec::parse(bad, None).is_err(), "{bad}");
        }
    }
}
