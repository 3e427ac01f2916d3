mod by_hand;

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::{FromRedisValue, Value};

use crate::redis_server::{Aof, RedisServer, free_port, redis_server_binary};

/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16384;
/// How long the nodes get to agree (after creation, after a migration).
const CONVERGE: Duration = Duration::from_secs(30);
/// How long one `redis-cli --cluster` run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// A local Redis Cluster: `N` primaries, no replicas, each a [`RedisServer`] in cluster mode on
/// `127.0.0.1` (own port, own directory holding its `nodes.conf` and AOF), joined with
/// `redis-cli --cluster create` (by hand when there are fewer than 3, which it refuses). Every
/// process is killed and every directory removed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    ids: Vec<String>,
    alive: Vec<bool>,
    /// Every node's `requirepass` (and `masterauth`), when set.
    password: Option<String>,
}

impl RedisCluster {
    /// Starts `primaries` nodes (at least 1), joins them, slots spread evenly, and waits until
    /// every node says `cluster_state:ok` and all agree on who owns each of the 16384 slots.
    /// Three or more are joined by `redis-cli --cluster create`; one or two, which it refuses, by
    /// hand (`CLUSTER ADDSLOTSRANGE` on each, `CLUSTER MEET` the others).
    pub fn start(primaries: usize, aof: Aof) -> io::Result<Self> {
        Self::start_with(primaries, aof, None)
    }

    /// [`RedisCluster::start`] with every node requiring `AUTH` with `password`.
    pub fn start_with_password(primaries: usize, aof: Aof, password: &str) -> io::Result<Self> {
        Self::start_with(primaries, aof, Some(password))
    }

    fn start_with(primaries: usize, aof: Aof, password: Option<&str>) -> io::Result<Self> {
        if primaries == 0 {
            return Err(io::Error::other("a Redis Cluster needs at least one primary"));
        }
        let mut nodes = Vec::with_capacity(primaries);
        for _ in 0..primaries {
            let mut builder = RedisServer::builder().aof(aof).pick_port(free_cluster_port);
            if let Some(p) = password {
                builder = builder.password(p).arg("--masterauth").arg(p);
            }
            // A node learns its own address from its peers: alone (a cluster of one) it would
            // name itself with an empty address in `CLUSTER SLOTS`, which clients cannot reach.
            let announce = ["--cluster-announce-ip", "127.0.0.1"];
            for arg in ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"].into_iter().chain(announce) {
                builder = builder.arg(arg);
            }
            nodes.push(builder.arg("--cluster-node-timeout").arg("5000").start()?);
        }
        let password = password.map(str::to_owned);
        let mut cluster = Self { ids: Vec::new(), alive: vec![true; primaries], nodes, password };
        let out = if primaries < 3 {
            cluster.join_by_hand()?
        } else {
            let mut cli = Command::new(redis_cli_binary());
            cli.args(["--cluster", "create"]).args(cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")));
            let out = cluster.run_cli(cli.args(["--cluster-replicas", "0", "--cluster-yes"]))?;
            format!("redis-cli --cluster create said:\n{out}")
        };
        cluster.wait_converged(|_| true).map_err(|e| io::Error::new(e.kind(), format!("{e}; {out}")))?;
        cluster.ids =
            (0..primaries).map(|i| cluster.query(i, redis::cmd("CLUSTER").arg("MYID"))).collect::<io::Result<_>>()?;
        Ok(cluster)
    }

    /// `redis+cluster://[:<password>@]127.0.0.1:<p1>,127.0.0.1:<p2>,…`: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let auth = self.password.as_ref().map(|p| format!(":{p}@")).unwrap_or_default();
        format!("redis+cluster://{auth}{}", seeds.join(","))
    }

    /// `redis://127.0.0.1:<port>` of each node, in node order.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// Each node's cluster ID (`CLUSTER MYID`, read when the cluster formed; a node keeps it
    /// across a restart, as it is in its `nodes.conf`).
    pub fn node_ids(&self) -> io::Result<Vec<String>> {
        Ok(self.ids.clone())
    }

    /// The index of the node owning `slot`, as `CLUSTER SLOTS` on a live node tells it.
    pub fn slot_owner(&self, slot: u16) -> io::Result<usize> {
        self.slot_map(self.any_alive()?)?
            .get(usize::from(slot))
            .copied()
            .flatten()
            .ok_or_else(|| io::Error::other(format!("slot {slot} has no owner")))
    }

    /// The owner (node index) of every slot, slot 0 first, as `CLUSTER SLOTS` on a live node
    /// tells it.
    pub fn slot_owners(&self) -> io::Result<Vec<usize>> {
        let map = self.slot_map(self.any_alive()?)?;
        map.iter()
            .enumerate()
            .map(|(s, o)| o.ok_or_else(|| io::Error::other(format!("slot {s} has no owner"))))
            .collect()
    }

    /// `CLUSTER KEYSLOT key`: the slot of `key` (of its `{hash tag}` if it has one).
    pub fn keyslot(&self, key: &str) -> io::Result<u16> {
        self.query(self.any_alive()?, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
    }

    /// `DBSIZE` of each node, in node order.
    pub fn dbsize_per_node(&self) -> io::Result<Vec<u64>> {
        (0..self.nodes.len()).map(|i| self.query(i, &redis::cmd("DBSIZE"))).collect()
    }

    /// Moves `slots` slots from node `from` to node `to` with `redis-cli --cluster reshard`
    /// (with `--cluster-replace`, so a key a client wrote meanwhile on the target cannot fail it),
    /// waits until every node agrees on the new owners and returns what `redis-cli` printed.
    pub fn migrate_slots(&self, from: usize, to: usize, slots: usize) -> io::Result<String> {
        // `reshard` refuses to start while the nodes disagree, e.g. just after another migration.
        let before = self.wait_converged(|_| true)?;
        let count = |map: &[Option<usize>], n| map.iter().filter(|o| **o == Some(n)).count();
        let want = count(&before, to) + slots.min(count(&before, from));
        let (from_id, to_id) = (self.id(from)?, self.id(to)?);
        let mut cli = Command::new(redis_cli_binary());
        cli.args(["--cluster", "reshard", &format!("127.0.0.1:{}", self.nodes[from].port())])
            .args(["--cluster-from", from_id, "--cluster-to", to_id, "--cluster-slots", &slots.to_string()])
            .args(["--cluster-yes", "--cluster-replace"]);
        let out = self.run_cli(&mut cli)?;
        self.wait_converged(|map| count(map, to) >= want)
            .map_err(|e| io::Error::new(e.kind(), format!("{e}; redis-cli --cluster reshard said:\n{out}")))?;
        Ok(out)
    }

    /// Moves the one slot `slot` (say, the one a hash tag lives in) from its owner to node `to`,
    /// by hand as the Redis docs describe: `SETSLOT IMPORTING` on the target, `MIGRATING` on the
    /// source, `GETKEYSINSLOT` + `MIGRATE … REPLACE KEYS …` until the source holds none, then
    /// `SETSLOT NODE` on the target, the source and every other node. Clients may keep writing:
    /// meanwhile the source answers `ASK` for keys it no longer has. Returns how many keys moved,
    /// once every live node names `to` as the owner.
    pub fn migrate_slot(&self, slot: u16, to: usize) -> io::Result<usize> {
        let from = self.slot_owner(slot)?;
        let to_id = self.id(to)?;
        if from == to {
            return Ok(0);
        }
        let setslot = |node: usize, state: &str, id: &str| {
            self.query::<()>(node, redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(state).arg(id))
        };
        setslot(to, "IMPORTING", self.id(from)?)?;
        setslot(from, "MIGRATING", to_id)?;
        let mut source = self.connect(from)?;
        let (mut moved, mut failures) = (0, 0);
        let mut retry = |e: io::Error| {
            if failures < 20 {
                failures += 1;
                Ok(())
            } else {
                Err(e)
            }
        };
        loop {
            let keys: Vec<Vec<u8>> =
                redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(100).query(&mut source).map_err(other)?;
            if !keys.is_empty() {
                let mut migrate = redis::cmd("MIGRATE");
                migrate.arg("127.0.0.1").arg(self.nodes[to].port()).arg("").arg(0).arg(10_000).arg("REPLACE");
                if let Some(p) = &self.password {
                    migrate.arg("AUTH").arg(p);
                }
                match migrate.arg("KEYS").arg(&keys).query::<()>(&mut source) {
                    Ok(()) => moved += keys.len(),
                    Err(e) => retry(other(e))?,
                }
                continue;
            }
            // Only once the source is empty: a node that loses a slot it still has keys in (it
            // learns of the target's claim by gossip) deletes them. New keys cannot appear on
            // the source now, as it answers `ASK` for every key it does not have.
            setslot(to, "NODE", to_id)?;
            match setslot(from, "NODE", to_id) {
                Ok(()) => break,
                Err(e) => retry(e)?,
            }
        }
        for i in (0..self.nodes.len()).filter(|&i| i != from && i != to && self.alive[i]) {
            setslot(i, "NODE", to_id)?;
        }
        self.wait_converged(|map| map[usize::from(slot)] == Some(to))?;
        Ok(moved)
    }

    /// `kill -9` of node `i` (panics if there is no such node). With no replicas, its slots go
    /// unserved; after the node timeout (5 s) the other nodes report `cluster_state:fail`.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
        self.alive[i] = false;
    }

    /// Starts a killed (or running: crashes it first) node again, same port, directory and ID;
    /// with AOF it comes back with what it had fsynced. Once every node runs, waits until the
    /// cluster is `cluster_state:ok` again everywhere.
    pub fn restart_node(&mut self, i: usize) -> io::Result<()> {
        self.nodes.get_mut(i).ok_or_else(|| io::Error::other(format!("no node {i}")))?.restart()?;
        self.alive[i] = true;
        if self.alive.iter().all(|a| *a) {
            self.wait_converged(|_| true)?;
        }
        Ok(())
    }

    /// Waits until every live node reports `cluster_state:ok` and the same owner for all 16384
    /// slots, and that slot map satisfies `done`; returns the map (slot → node index).
    fn wait_converged(&self, done: impl Fn(&[Option<usize>]) -> bool) -> io::Result<Vec<Option<usize>>> {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let problem = match self.agreed_slot_map() {
                Ok(map) if done(&map) => return Ok(map),
                Ok(_) => "the slot map has not changed as expected yet".to_owned(),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("cluster did not converge: {problem}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn agreed_slot_map(&self) -> io::Result<Vec<Option<usize>>> {
        let mut agreed: Option<Vec<Option<usize>>> = None;
        for i in (0..self.nodes.len()).filter(|&i| self.alive[i]) {
            let info: String = self.query(i, redis::cmd("CLUSTER").arg("INFO"))?;
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err(io::Error::other(format!("node {i} is not cluster_state:ok")));
            }
            let map = self.slot_map(i)?;
            if let Some(missing) = map.iter().position(Option::is_none) {
                return Err(io::Error::other(format!("node {i} knows no owner of slot {missing}")));
            }
            match &agreed {
                Some(a) if *a != map => return Err(io::Error::other(format!("node {i} disagrees about slots"))),
                Some(_) => {}
                None => agreed = Some(map),
            }
        }
        agreed.ok_or_else(|| io::Error::other("no node is running"))
    }

    /// Slot → node index, from `CLUSTER SLOTS` on node `i`.
    fn slot_map(&self, i: usize) -> io::Result<Vec<Option<usize>>> {
        let ranges: Vec<Vec<Value>> = self.query(i, redis::cmd("CLUSTER").arg("SLOTS"))?;
        let ports = self.ports();
        let mut map = vec![None; SLOTS];
        for range in ranges {
            let bad = || io::Error::other(format!("unexpected CLUSTER SLOTS entry {range:?}"));
            let [start, end, primary, ..] = range.as_slice() else { return Err(bad()) };
            let (start, end): (usize, usize) = (parse(start)?, parse(end)?);
            let primary: Vec<Value> = parse(primary)?;
            let port: u16 = parse(primary.get(1).ok_or_else(bad)?)?;
            let owner = ports.iter().position(|p| *p == port).ok_or_else(bad)?;
            for owned in map.get_mut(start..=end).ok_or_else(bad)? {
                *owned = Some(owner);
            }
        }
        Ok(map)
    }

    fn id(&self, i: usize) -> io::Result<&str> {
        self.ids.get(i).map(String::as_str).ok_or_else(|| io::Error::other(format!("no node {i}")))
    }

    fn any_alive(&self) -> io::Result<usize> {
        self.alive.iter().position(|a| *a).ok_or_else(|| io::Error::other("no node is running"))
    }

    fn connect(&self, i: usize) -> io::Result<redis::Connection> {
        let node = self.nodes.get(i).ok_or_else(|| io::Error::other(format!("no node {i}")))?;
        let client = redis::Client::open(node.url()).map_err(other)?;
        let con = client.get_connection_with_timeout(Duration::from_secs(2)).map_err(other)?;
        con.set_read_timeout(Some(Duration::from_secs(15))).map_err(other)?;
        Ok(con)
    }

    fn query<T: FromRedisValue>(&self, i: usize, cmd: &redis::Cmd) -> io::Result<T> {
        cmd.query(&mut self.connect(i)?).map_err(|e| io::Error::other(format!("node {i}: {e}")))
    }

    /// Runs `redis-cli` (stdin closed, so it never waits for a "yes") with a deadline; returns
    /// its stdout and stderr, colour codes removed, or an error holding them when it failed.
    fn run_cli(&self, cmd: &mut Command) -> io::Result<String> {
        static N: AtomicU64 = AtomicU64::new(0);
        // Into a file, not a pipe: a long reshard prints more than a pipe buffer holds.
        let path = self.nodes[0].dir().join(format!("redis-cli-{}.out", N.fetch_add(1, Ordering::Relaxed)));
        let file = File::create(&path)?;
        if let Some(p) = &self.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).spawn()?;
        let deadline = Instant::now() + CLI_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = strip_ansi(&std::fs::read_to_string(&path).unwrap_or_default());
        let _ = std::fs::remove_file(&path);
        match status {
            Some(s) if s.success() => Ok(out),
            Some(s) => Err(io::Error::other(format!("redis-cli --cluster failed ({s}):\n{out}"))),
            None => Err(io::Error::new(io::ErrorKind::TimedOut, format!("redis-cli --cluster hung:\n{out}"))),
        }
    }
}

/// The `redis-cli` next to [`redis_server_binary`] when that is a path, else the one on `PATH`.
fn redis_cli_binary() -> PathBuf {
    let server = redis_server_binary();
    let sibling = server.parent().filter(|p| !p.as_os_str().is_empty()).map(|p| p.join("redis-cli"));
    sibling.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("redis-cli"))
}

/// A free port whose cluster bus port (`port + 10000`, so at most 55535) is free too.
fn free_cluster_port() -> io::Result<u16> {
    for _ in 0..200 {
        let port = free_port()?;
        if port <= 55535 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port pair (port, port + 10000) for a cluster node"))
}

/// `redis-cli --cluster` colours its output even when it is not a terminal.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … final byte in '@'..='~'
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse<T: FromRedisValue>(v: &Value) -> io::Result<T> {
    redis::from_redis_value_ref(v).map_err(other)
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}
