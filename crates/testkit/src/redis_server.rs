use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Append-only-file persistence of a test Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aof {
    /// No persistence: fastest; a restart loses everything.
    Off,
    /// `appendfsync everysec`, the production setting qfrefund requires.
    EverySec,
    /// `appendfsync always`: a `kill -9` loses nothing acknowledged.
    Always,
}

/// The `redis-server` to run: `$QFREFUND_REDIS_SERVER`, else `redis-server` from `PATH`.
pub fn redis_server_binary() -> PathBuf {
    std::env::var_os("QFREFUND_REDIS_SERVER").map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

/// A key prefix no other test in this run uses: `t:<name>:<pid>:<n>`.
pub fn unique_namespace(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t:{name}:{}:{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Options for [`RedisServer`].
#[derive(Debug, Clone)]
pub struct RedisServerBuilder {
    aof: Aof,
    password: Option<String>,
    tls: bool,
    extra: Vec<String>,
    pick_port: fn() -> io::Result<u16>,
}

impl RedisServerBuilder {
    pub fn aof(mut self, aof: Aof) -> Self {
        self.aof = aof;
        self
    }

    /// Requires `AUTH` with this password.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Serve TLS only (`rediss://`), with a certificate for 127.0.0.1 signed by a throwaway CA
    /// (see [`RedisServer::ca_file`]). Needs the `openssl` command.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Any other `redis-server` option, e.g. `["--maxmemory-policy", "allkeys-lru"]`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_owned());
        self
    }

    /// How a port is chosen (default: any free one); a cluster node needs `port + 10000` free too.
    pub(crate) fn pick_port(mut self, pick: fn() -> io::Result<u16>) -> Self {
        self.pick_port = pick;
        self
    }

    /// Starts the server and waits until it answers `PING`.
    pub fn start(self) -> io::Result<RedisServer> {
        let dir = TempDir::new()?;
        if self.tls {
            make_certificate(&dir.path)?;
        }
        let mut last_err = None;
        // The free port found here could be taken by someone else before redis binds it: retry.
        for _ in 0..5 {
            let port = (self.pick_port)()?;
            let mut server =
                RedisServer { child: None, port, dir: dir.path.clone(), options: self.clone(), _dir: None };
            match server.spawn() {
                Ok(()) => {
                    server._dir = Some(dir);
                    return Ok(server);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }
}

/// A `redis-server` child process on `127.0.0.1:<free port>`, killed and cleaned up on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    options: RedisServerBuilder,
    _dir: Option<TempDir>,
}

impl RedisServer {
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder { aof: Aof::Off, password: None, tls: false, extra: Vec::new(), pick_port: free_port }
    }

    /// The CA certificate (PEM) a TLS server's certificate is signed with.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server without persistence.
    pub fn start() -> io::Result<Self> {
        Self::builder().start()
    }

    /// A server with AOF `everysec` (what production runs).
    pub fn start_with_aof() -> io::Result<Self> {
        Self::builder().aof(Aof::EverySec).start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (with the password when one is set).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        match &self.options.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The directory holding its AOF and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`: no shutdown, no final fsync — a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Crashes the server (`kill -9`) and starts it again on the same port and directory; with
    /// AOF it comes back with what it had fsynced.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The old socket can linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// SIGSTOP / SIGCONT: a Redis that stops answering with its connections open.
    pub fn pause(&self, paused: bool) -> io::Result<()> {
        let Some(child) = &self.child else { return Err(io::Error::other("not running")) };
        let status =
            Command::new("kill").arg(if paused { "-STOP" } else { "-CONT" }).arg(child.id().to_string()).status()?;
        if status.success() { Ok(()) } else { Err(io::Error::other("kill -STOP/-CONT failed")) }
    }

    fn spawn(&mut self) -> io::Result<()> {
        let bin = redis_server_binary();
        let mut cmd = Command::new(&bin);
        if self.options.tls {
            let d = &self.dir;
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(d.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(d.join("key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(d.join("ca.pem"));
        } else {
            cmd.arg("--port").arg(self.port.to_string());
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        match self.options.aof {
            Aof::Off => cmd.args(["--appendonly", "no"]),
            Aof::EverySec => cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]),
            Aof::Always => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        if let Some(p) = &self.options.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.args(&self.options.extra).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{} not found: install Redis (`sudo apt-get install redis-server`, or `make deps`) \
                         or set QFREFUND_REDIS_SERVER / REDIS_URL",
                        bin.display()
                    ),
                )
            } else {
                e
            }
        })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(io::Error::other(format!("redis-server exited ({status}) on port {}: {tail}", self.port)));
            }
            let ready = if self.options.tls {
                tls_ping(self.port, &self.dir.join("ca.pem"), self.options.password.as_deref())
            } else {
                ping(addr, self.options.password.as_deref()).is_ok()
            };
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server on port {} did not answer PING", self.port),
                ));
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis for one test: the environment's `REDIS_URL`, or a fresh local server.
#[derive(Debug)]
pub enum TestRedis {
    External { url: String },
    Local(RedisServer),
}

impl TestRedis {
    /// `REDIS_URL` when set (keep keys apart with [`unique_namespace`]), else a new server.
    pub fn start() -> io::Result<Self> {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => Ok(TestRedis::External { url }),
            _ => RedisServer::start().map(TestRedis::Local),
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestRedis::External { url } => url.clone(),
            TestRedis::Local(s) => s.url(),
        }
    }
}

/// One RESP `PING` over a plain socket: readiness without a Redis client library.
fn ping(addr: SocketAddr, password: Option<&str>) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut cmd = Vec::new();
    if let Some(p) = password {
        cmd.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    cmd.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    s.write_all(&cmd)?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    let want: &[u8] = if password.is_some() { b"+OK\r\n+PONG\r\n" } else { b"+PONG\r\n" };
    while got.len() < want.len() {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    if got.starts_with(want) { Ok(()) } else { Err(io::Error::other(String::from_utf8_lossy(&got).into_owned())) }
}

/// `redis-cli --tls PING`: readiness of a TLS-only server.
fn tls_ping(port: u16, ca: &Path, password: Option<&str>) -> bool {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["--tls", "-h", "127.0.0.1", "-p", &port.to_string(), "--cacert"]).arg(ca);
    if let Some(p) = password {
        cmd.args(["--no-auth-warning", "-a", p]);
    }
    cmd.arg("PING").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
}

/// A throwaway CA and a certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificate(dir: &Path) -> io::Result<()> {
    let run = |args: &[&str]| -> io::Result<()> {
        let out = Command::new("openssl").current_dir(dir).args(args).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr))))
        }
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=qfrefund test CA",
    ])?;
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "req.pem", "-subj", "/CN=127.0.0.1"])?;
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")?;
    run(&[
        "x509",
        "-req",
        "-in",
        "req.pem",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])
}

pub(crate) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> io::Result<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "qfrefund-redis-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
