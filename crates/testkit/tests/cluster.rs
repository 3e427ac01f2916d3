//! The cluster harness: three primaries with AOF form a healthy cluster, keys spread over all of
//! them, and slots move (one by hand, a hundred with `redis-cli --cluster reshard`) while a client
//! keeps writing, without losing an acknowledged write. One and two primaries (joined by hand)
//! form and take writes too.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{Commands, Connection, ErrorKind, ServerErrorKind};
use testkit::{Aof, RedisCluster};

fn connect(port: u16) -> Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection().unwrap()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A client writing `{tag}:<n>` = n and `{tag}:last` = n, n = 0, 1, …, one at a time, following
/// `MOVED` and `ASK` by hand as a cluster client does, until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Written>,
}

/// The last n acknowledged, and the redirects the writer followed.
#[derive(Debug)]
struct Written {
    last: u64,
    moved: u64,
    asked: u64,
}

impl Writer {
    fn start(cluster: &RedisCluster, tag: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let ports = cluster.ports();
        let mut port = ports[cluster.slot_owner(cluster.keyslot(&format!("{{{tag}}}")).unwrap()).unwrap()];
        let (tag, flag) = (tag.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: HashMap<u16, Connection> = HashMap::new();
            let mut n = 0u64;
            let (mut moved, mut asked) = (0, 0);
            while !flag.load(Ordering::Relaxed) || n < 10 {
                for key in [format!("{{{tag}}}:{n}"), format!("{{{tag}}}:last")] {
                    let mut ask: Option<u16> = None;
                    loop {
                        let target = ask.unwrap_or(port);
                        let con = conns.entry(target).or_insert_with(|| connect(target));
                        if ask.is_some() {
                            redis::cmd("ASKING").query::<()>(con).unwrap();
                        }
                        match con.set::<_, _, ()>(&key, n) {
                            Ok(()) => break,
                            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::Moved) => {
                                port = port_of(e.redirect_node().unwrap().0);
                                ask = None;
                                moved += 1;
                            }
                            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::Ask) => {
                                ask = Some(port_of(e.redirect_node().unwrap().0));
                                asked += 1;
                            }
                            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::TryAgain) => {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err(e) => panic!("SET {key}: {e}"),
                        }
                        assert!(moved + asked < 100_000, "redirected forever");
                    }
                }
                n += 1;
            }
            Written { last: n - 1, moved, asked }
        });
        Writer { stop, thread }
    }

    fn stop(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        let written = self.thread.join().unwrap();
        eprintln!("writer: {written:?}");
        assert!(written.moved > 0, "the writer was sent to the new owner");
        written
    }
}

/// Every key the writer had acknowledged is on the node that now owns its slot.
fn assert_all_written(cluster: &RedisCluster, tag: &str, last: u64) {
    let owner = cluster.slot_owner(cluster.keyslot(&format!("{{{tag}}}")).unwrap()).unwrap();
    let mut con = connect(cluster.ports()[owner]);
    for n in 0..=last {
        let got: Option<u64> = con.get(format!("{{{tag}}}:{n}")).unwrap();
        assert_eq!(got, Some(n), "{{{tag}}}:{n} on node {owner}");
    }
    let got: Option<u64> = con.get(format!("{{{tag}}}:last")).unwrap();
    assert_eq!(got, Some(last));
}

#[test]
fn three_primaries_with_aof_hold_keys_on_every_node_and_move_slots_under_writes() {
    let started = Instant::now();
    let cluster = RedisCluster::start(3, Aof::EverySec).unwrap();
    eprintln!("cluster up in {:?}", started.elapsed());

    let ports = cluster.ports();
    assert_eq!(ports.len(), 3);
    assert_eq!(
        cluster.url(),
        format!("redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1], ports[2])
    );
    assert_eq!(cluster.node_urls(), ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>());
    let ids = cluster.node_ids().unwrap();
    assert!(ids.iter().all(|id| id.len() == 40), "{ids:?}");
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    for url in cluster.node_urls() {
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).unwrap();
        assert!(info.contains("cluster_state:ok"), "{info}");
        let aof: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("appendonly").query(&mut con).unwrap();
        assert_eq!(aof, ["appendonly", "yes"]);
    }
    let owners = cluster.slot_owners().unwrap();
    assert_eq!(owners.len(), 16384);
    assert!((0..3).all(|i| owners.iter().filter(|o| **o == i).count() > 5000), "slots spread evenly");
    assert_eq!(cluster.keyslot("foo").unwrap(), 12182);
    assert_eq!(cluster.keyslot("{user1000}.following").unwrap(), cluster.keyslot("{user1000}.followers").unwrap());

    // 300 keys under 300 hash tags, each written straight to its slot's owner.
    let mut conns: Vec<Connection> = ports.iter().map(|p| connect(*p)).collect();
    for i in 0..300 {
        let key = format!("{{tag-{i}}}:k");
        let owner = cluster.slot_owner(cluster.keyslot(&key).unwrap()).unwrap();
        conns[owner].set::<_, _, ()>(&key, i).unwrap();
    }
    let sizes = cluster.dbsize_per_node().unwrap();
    assert_eq!(sizes.iter().sum::<u64>(), 300, "{sizes:?}");
    assert!(sizes.iter().all(|s| *s > 50), "keys on every node: {sizes:?}");

    // One slot, by hand, while a client keeps writing into it.
    let slot = cluster.keyslot("{tag-0}:k").unwrap();
    let from = cluster.slot_owner(slot).unwrap();
    let to = (from + 1) % 3;
    let writer = Writer::start(&cluster, "tag-0");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let moved = cluster.migrate_slot(slot, to).unwrap();
    eprintln!("migrate_slot moved {moved} keys in {:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    let written = writer.stop();
    // New keys written mid-migration went to the target through `ASK`.
    assert!(written.asked > 0, "the writer wrote while the slot was migrating: {written:?}");
    let last0 = written.last;
    assert!(moved > 1, "the writer's keys moved too: {moved}");
    assert_eq!(cluster.slot_owner(slot).unwrap(), to);
    let got: Option<i64> = conns[to].get("{tag-0}:k").unwrap();
    assert_eq!(got, Some(0));
    let left: u64 = redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query(&mut conns[from]).unwrap();
    assert_eq!(left, 0);
    assert_all_written(&cluster, "tag-0", last0);
    assert_eq!(cluster.migrate_slot(slot, to).unwrap(), 0, "already there");

    // A hundred slots with `redis-cli --cluster reshard`, with a writer in node 0's lowest slot
    // (reshard takes the source's slots from the lowest up).
    let tag = (0..).map(|i| format!("low-{i}")).find(|t| cluster.keyslot(t).unwrap() < 100).unwrap();
    assert_eq!(cluster.slot_owner(cluster.keyslot(&tag).unwrap()).unwrap(), 0);
    let before = cluster.slot_owners().unwrap();
    let writer = Writer::start(&cluster, &tag);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let out = cluster.migrate_slots(0, 1, 100).unwrap();
    eprintln!("migrate_slots took {:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    let last1 = writer.stop().last;
    assert!(out.contains("Moving slot"), "{out}");
    let after = cluster.slot_owners().unwrap();
    let count = |map: &[usize], n| map.iter().filter(|o| **o == n).count();
    assert_eq!(count(&after, 0), count(&before, 0) - 100);
    assert_eq!(count(&after, 1), count(&before, 1) + 100);
    assert_all_written(&cluster, &tag, last1);
    // Each writer's keys: `{tag}:0` to `{tag}:last_n`, and `{tag}:last`.
    assert_eq!(cluster.dbsize_per_node().unwrap().iter().sum::<u64>(), 300 + (last0 + 2) + (last1 + 2), "no key lost");
    eprintln!("test took {:?}", started.elapsed());
}

#[test]
fn a_killed_node_comes_back_from_its_aof_and_the_cluster_heals() {
    let mut cluster = RedisCluster::start(3, Aof::Always).unwrap();
    let slot = cluster.keyslot("{crash}").unwrap();
    let owner = cluster.slot_owner(slot).unwrap();
    let mut con = connect(cluster.ports()[owner]);
    con.set::<_, _, ()>("{crash}:k", "v").unwrap();

    cluster.kill_node(owner);
    assert!(cluster.dbsize_per_node().is_err());
    cluster.restart_node(owner).unwrap();
    assert_eq!(cluster.node_ids().unwrap().len(), 3);
    assert_eq!(cluster.slot_owner(slot).unwrap(), owner, "same ID, same slots");
    let got: Option<String> = connect(cluster.ports()[owner]).get("{crash}:k").unwrap();
    assert_eq!(got.as_deref(), Some("v"));
}

#[test]
fn one_and_two_primaries_form_by_hand_and_take_writes() {
    assert!(RedisCluster::start(0, Aof::Off).is_err());
    for n in [1, 2] {
        let cluster = RedisCluster::start(n, Aof::EverySec).unwrap();
        let ports = cluster.ports();
        assert_eq!(ports.len(), n);
        let ids = cluster.node_ids().unwrap();
        assert!(ids.iter().all(|id| id.len() == 40) && (n == 1 || ids[0] != ids[1]), "{ids:?}");
        for url in cluster.node_urls() {
            let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).unwrap();
            assert!(info.contains("cluster_state:ok"), "{info}");
            assert!(info.contains(&format!("cluster_known_nodes:{n}")), "{info}");
        }
        let owners = cluster.slot_owners().unwrap();
        assert!((0..n).all(|i| owners.iter().filter(|o| **o == i).count() == 16384 / n), "slots split evenly");
        // Every node names itself by an address a client can connect to, even alone.
        let mut con = connect(ports[0]);
        let slots: Vec<(u16, u16, Vec<redis::Value>)> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
        for (_, _, node) in &slots {
            let ip: String = redis::from_redis_value_ref(&node[0]).unwrap();
            assert_eq!(ip, "127.0.0.1", "{slots:?}");
        }

        let mut conns: Vec<Connection> = ports.iter().map(|p| connect(*p)).collect();
        for i in 0..100 {
            let key = format!("{{tag-{i}}}:k");
            let owner = cluster.slot_owner(cluster.keyslot(&key).unwrap()).unwrap();
            conns[owner].set::<_, _, ()>(&key, i).unwrap();
        }
        let sizes = cluster.dbsize_per_node().unwrap();
        assert_eq!(sizes.iter().sum::<u64>(), 100, "{sizes:?}");
        assert!(sizes.iter().all(|s| *s > 20), "keys on every node: {sizes:?}");

        // With two, a slot moves as in a larger cluster (the bench places each shard this way).
        if n == 2 {
            let slot = cluster.keyslot("{tag-0}:k").unwrap();
            let to = 1 - cluster.slot_owner(slot).unwrap();
            assert!(cluster.migrate_slot(slot, to).unwrap() >= 1);
            assert_eq!(cluster.slot_owner(slot).unwrap(), to);
            let got: Option<i64> = conns[to].get("{tag-0}:k").unwrap();
            assert_eq!(got, Some(0));
        }
    }
}
