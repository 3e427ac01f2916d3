//! A real PostgreSQL server for tests: Debian's `postgresql` binaries, a fresh cluster made with
//! `initdb` in a temporary directory, started with `pg_ctl` on a free loopback port (trust
//! authentication, nothing on a Unix socket outside the directory), stopped and removed on drop.
//! PostgreSQL refuses to run as root: as root, the cluster is made and run as the `postgres`
//! user (the package creates it) through `runuser`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::redis_server::free_port;

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: `$QFREFUND_PG_BIN`, the PATH, or the
/// newest `/usr/lib/postgresql/<version>/bin` (where Debian keeps them off the PATH).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("QFREFUND_PG_BIN") {
        return Some(d.into());
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, b): &(u32, PathBuf)| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PostgresServer {
    /// Makes a cluster and starts it; fails (with what to install) when PostgreSQL is missing.
    pub fn start() -> io::Result<Self> {
        let bin = postgres_bin_dir().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "PostgreSQL not found: install Debian's postgresql (make deps does)",
            )
        })?;
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "qfrefund-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown").arg("postgres:").arg(&dir).status()?.success();
            if !ok {
                return Err(io::Error::other("cannot give the test cluster's directory to the postgres user"));
            }
        }
        let port = free_port()?;
        let server = Self { bin, dir, port, as_postgres };
        let data = server.dir.join("data");
        server.run("initdb", &["-D", path(&data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])?;
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            server.dir.display()
        );
        let log = server.dir.join("server.log");
        server.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-o", &opts, "-w", "-t", "30", "start"])?;
        server.wait_ready(Duration::from_secs(30))?;
        Ok(server)
    }

    fn run(&self, tool: &str, args: &[&str]) -> io::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).current_dir(&self.dir).stdin(Stdio::null()).output()?;
        if out.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        )))
    }

    fn wait_ready(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "PostgreSQL did not start listening"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `postgres` as user `postgres` (trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run("pg_ctl", &["-D", path(&data), "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
