//! The Redis connection every part of a process uses (ledger operations, the fetch, webhooks), for a
//! single Redis (`redis://`, `rediss://`) or a Sentinel-managed primary
//! (`redis+sentinel://[:password@]host:port[,host:port…]/service[/db]`, `rediss+sentinel://` for
//! TLS to the data nodes), or a Redis Cluster (`redis+cluster://…`, see `store::cluster`).
//!
//! With Sentinel, the connection follows the primary: when a command fails in a way a failover
//! causes (connection lost or refused, `READONLY` from a demoted primary), the sentinels are asked
//! for the current primary and, if it moved, later commands go there. The failed command's error
//! is returned as it was: every caller already treats a Redis error as "try again later", and the
//! ledger's fencing makes a retry after a failover safe.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::store::LedgerError;

/// Where Redis is.
#[derive(Clone)]
pub enum Endpoint {
    /// One server.
    Direct(Box<redis::Client>),
    /// The primary a set of sentinels names.
    Sentinel(Arc<SentinelSpec>),
    /// A Redis Cluster.
    Cluster(Arc<crate::store::cluster::ClusterSpec>),
}

/// A parsed `redis+sentinel://` URL.
pub struct SentinelSpec {
    /// `host:port` of each sentinel.
    pub sentinels: Vec<String>,
    pub service: String,
    /// For the data nodes (from the URL's user info), never printed.
    username: Option<String>,
    password: Option<String>,
    /// For the sentinels (`?sentinel_password=`), never printed.
    sentinel_password: Option<String>,
    pub db: i64,
    pub tls: bool,
    tls_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for SentinelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSpec")
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

pub(crate) fn bad_url(why: &str) -> LedgerError {
    LedgerError::Redis(redis::RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "bad Redis URL",
        why.to_owned(),
    )))
}

/// Percent-decoding for the user info of a URL (passwords may carry reserved characters).
pub(crate) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The user and password (percent-decoded) before the `@` of a URL's authority, and the rest.
pub(crate) fn user_info(rest: &str) -> (Option<String>, Option<String>, &str) {
    let Some((auth, rest)) = rest.rsplit_once('@') else { return (None, None, rest) };
    match auth.split_once(':') {
        Some((u, p)) => ((!u.is_empty()).then(|| decode(u)), Some(decode(p)), rest),
        None => (None, Some(decode(auth)), rest),
    }
}

impl SentinelSpec {
    /// Parses `redis+sentinel://[user:password@]h1:p1[,h2:p2…]/service[/db][?sentinel_password=…]`.
    pub fn parse(url: &str, tls_ca: Option<Vec<u8>>) -> Result<Self, LedgerError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
            (true, r)
        } else {
            return Err(bad_url("expected redis+sentinel:// or rediss+sentinel://"));
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (username, password, rest) = user_info(rest);
        let mut parts = rest.split('/');
        let hosts = parts.next().unwrap_or("");
        let service = parts.next().unwrap_or("").to_owned();
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d.parse().map_err(|_| bad_url("the database after the service name must be a number"))?,
        };
        if service.is_empty() {
            return Err(bad_url("name the Sentinel service: redis+sentinel://host:26379/<service>"));
        }
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| if h.contains(':') { h.to_owned() } else { format!("{h}:26379") })
            .collect();
        if sentinels.is_empty() {
            return Err(bad_url("name at least one sentinel host:port"));
        }
        let sentinel_password =
            query.split('&').find_map(|kv| kv.strip_prefix("sentinel_password=")).map(decode).filter(|p| !p.is_empty());
        Ok(Self { sentinels, service, username, password, sentinel_password, db, tls, tls_ca })
    }

    fn client_for(&self, host: &str, port: u16, sentinel: bool) -> Result<redis::Client, redis::RedisError> {
        let (user, pass, db) = if sentinel {
            (None, self.sentinel_password.as_deref(), 0)
        } else {
            (self.username.as_deref(), self.password.as_deref(), self.db)
        };
        let addr = if self.tls {
            redis::ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure: false, tls_params: None }
        } else {
            redis::ConnectionAddr::Tcp(host.to_owned(), port)
        };
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(db);
        if let Some(u) = user {
            redis_info = redis_info.set_username(u);
        }
        if let Some(p) = pass {
            redis_info = redis_info.set_password(p);
        }
        let info = redis::IntoConnectionInfo::into_connection_info(addr)?.set_redis_settings(redis_info);
        match (&self.tls_ca, self.tls) {
            (Some(pem), true) => with_ca(info, pem),
            _ => redis::Client::open(info),
        }
    }

    /// Asks the sentinels, in turn, where the primary is, and checks that it says it is one.
    pub async fn primary(&self) -> Result<(String, redis::Client), redis::RedisError> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let mut last = None;
        for s in &self.sentinels {
            let Some((host, port)) = s.rsplit_once(':').and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h, p))) else {
                continue;
            };
            let asked = async {
                let mut con =
                    self.client_for(host, port, true)?.get_multiplexed_async_connection_with_config(&cfg).await?;
                let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.service)
                    .query_async(&mut con)
                    .await?;
                let (h, p) = addr.ok_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Io, "sentinel does not know the service"))
                })?;
                let client = self.client_for(&h, p, false)?;
                let mut node = client.get_multiplexed_async_connection_with_config(&cfg).await?;
                let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut node).await?;
                let is_master = matches!(role.first(), Some(Value::BulkString(b)) if b == b"master");
                if !is_master {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the node a sentinel named is not a primary (yet)",
                    )));
                }
                Ok((format!("{h}:{p}"), client))
            };
            match asked.await {
                Ok(found) => return Ok(found),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no sentinel answered"))))
    }
}

impl Endpoint {
    /// `url` as given by the user; `tls_ca_file` trusted for `rediss` when given.
    pub fn parse(url: &str, tls_ca_file: Option<&std::path::Path>) -> Result<Self, LedgerError> {
        let ca = match tls_ca_file {
            None => None,
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| LedgerError::TlsCa { path: path.display().to_string(), error: e.to_string() })?,
            ),
        };
        if url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://") {
            return Ok(Endpoint::Sentinel(Arc::new(SentinelSpec::parse(url, ca)?)));
        }
        if url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://") {
            return Ok(Endpoint::Cluster(Arc::new(crate::store::cluster::ClusterSpec::parse(url, ca)?)));
        }
        let client = match ca {
            None => redis::Client::open(url)?,
            Some(pem) => with_ca(url, &pem)?,
        };
        Ok(Endpoint::Direct(Box::new(client)))
    }

    /// A client for the server to talk to now (the current primary, with Sentinel; any node
    /// that answers, with Cluster), and a name for it (for logs; no credentials).
    pub async fn client(&self) -> Result<(String, redis::Client), redis::RedisError> {
        match self {
            Endpoint::Direct(c) => Ok((c.get_connection_info().addr().to_string(), c.as_ref().clone())),
            Endpoint::Sentinel(spec) => spec.primary().await,
            Endpoint::Cluster(spec) => spec.any_node().await,
        }
    }

    /// Clients of every primary: the one server, Sentinel's primary, or each cluster primary.
    pub async fn primaries(&self) -> Result<Vec<(String, redis::Client)>, redis::RedisError> {
        match self {
            Endpoint::Cluster(spec) => spec.primaries().await,
            _ => Ok(vec![self.client().await?]),
        }
    }
}

struct Current {
    addr: String,
    con: ConnectionManager,
}

/// A cheap-to-clone connection that reconnects by itself and, with Sentinel, follows the primary;
/// with Cluster, it is the cluster client's connection, which routes each command by its key.
#[derive(Clone)]
pub struct RedisConn {
    endpoint: Endpoint,
    cluster: Option<redis::cluster_async::ClusterConnection>,
    config: ConnectionManagerConfig,
    current: Arc<RwLock<Current>>,
    /// One re-resolution at a time, and not more often than every 200 ms.
    resolving: Arc<tokio::sync::Mutex<Instant>>,
}

impl RedisConn {
    pub async fn connect(
        endpoint: Endpoint,
        config: ConnectionManagerConfig,
        response_timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        let cluster = match &endpoint {
            Endpoint::Cluster(spec) => Some(spec.client(response_timeout)?.get_async_connection().await?),
            _ => None,
        };
        let (addr, client) = endpoint.client().await?;
        let con = client.get_connection_manager_with_config(config.clone()).await?;
        Ok(Self {
            endpoint,
            cluster,
            config,
            current: Arc::new(RwLock::new(Current { addr, con })),
            resolving: Arc::new(tokio::sync::Mutex::new(Instant::now())),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The server commands go to now (`host:port`).
    pub fn address(&self) -> String {
        self.current.read().map(|c| c.addr.clone()).unwrap_or_default()
    }

    fn manager(&self) -> ConnectionManager {
        match self.current.read() {
            Ok(c) => c.con.clone(),
            Err(poisoned) => poisoned.into_inner().con.clone(),
        }
    }

    /// After an error a failover can cause: if the sentinels name another primary, switch to it.
    async fn follow(&self, e: &redis::RedisError) {
        let Endpoint::Sentinel(spec) = &self.endpoint else { return };
        let failover_like = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || matches!(e.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly));
        if !failover_like {
            return;
        }
        let mut last = self.resolving.lock().await;
        if last.elapsed() < Duration::from_millis(200) {
            return;
        }
        *last = Instant::now();
        match spec.primary().await {
            Ok((addr, client)) if addr != self.address() => {
                match client.get_connection_manager_with_config(self.config.clone()).await {
                    Ok(con) => {
                        tracing::warn!(primary = %addr, "Redis primary moved (Sentinel failover): following it");
                        if let Ok(mut c) = self.current.write() {
                            *c = Current { addr, con };
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot reach the new Redis primary yet"),
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "no sentinel named a reachable primary yet"),
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if let Some(c) = &mut self.cluster {
                return c.req_packed_command(cmd).await;
            }
            let mut con = self.manager();
            let r = con.req_packed_command(cmd).await;
            if let Err(e) = &r {
                self.follow(e).await;
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if let Some(c) = &mut self.cluster {
                return c.req_packed_commands(pipeline, offset, count).await;
            }
            let mut con = self.manager();
            let r = con.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &r {
                self.follow(e).await;
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}

/// A client that trusts the CA in `pem` (TLS needs the `tls` feature: without it, this says so).
pub(crate) fn with_ca(info: impl redis::IntoConnectionInfo, pem: &[u8]) -> Result<redis::Client, redis::RedisError> {
    #[cfg(feature = "tls")]
    {
        redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) })
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (info, pem);
        Err(no_tls())
    }
}

/// The error of a TLS setting in a build without TLS.
#[cfg(not(feature = "tls"))]
pub(crate) fn no_tls() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "TLS to Redis (rediss://, a CA file) needs the `tls` feature of qfrefund-ledger (qfrefund-producer: `tls`)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse_and_keep_their_secrets() {
        let s = SentinelSpec::parse(
            "redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2/mymaster/2?sentinel_password=sp",
            None,
        )
        .unwrap();
        assert_eq!(s.sentinels, ["10.0.0.1:26379", "10.0.0.2:26379"]);
        assert_eq!((s.service.as_str(), s.db, s.tls), ("mymaster", 2, false));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.sentinel_password.as_deref(), Some("sp"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("p@ss") && !shown.contains("sp\""), "{shown}");
        assert!(SentinelSpec::parse("rediss+sentinel://h:1/svc", None).unwrap().tls);
        for bad in ["redis+sentinel://h:1", "redis+sentinel:///svc", "redis+sentinel://h:1/svc/x", "redis://h/0"] {
            assert!(SentinelSpec::parse(bad, None).is_err(), "{bad}");
        }
    }
}
