//! The README's quick start, run as written: its shell block, in bash, with nothing but the
//! binary's directory, the ports and the Redis directory swapped for this run's (so that it cannot
//! collide with anything else on the machine). Each command must succeed, the refund must end
//! `succeeded` with one refund at the simulator, and the clean-up must leave nothing running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::process::Command;

use qfrefund_e2e::{Scratch, qfrefund_bin};

/// The first ```sh block after the quick start's heading.
fn quick_start() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme.split("## Quick start, by hand").nth(1).expect("the README has its quick start");
    let block = section.split("```sh\n").nth(1).expect("a ```sh block").split("\n```").next().unwrap();
    block.to_owned()
}

/// Two distinct free ports (both held while the second is chosen, so they cannot be the same).
fn two_free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// Shuts the quick start's Redis down if the script did not get to it.
struct RedisGuard(u16);

impl Drop for RedisGuard {
    fn drop(&mut self) {
        let _ = Command::new("redis-cli").args(["-p", &self.0.to_string(), "shutdown", "nosave"]).output();
    }
}

#[test]
fn the_readmes_quick_start_runs_as_written() {
    let block = quick_start();
    for must in ["cargo build --release -p qfrefund", "target/release", "6390", "8480", "/tmp/qfrefund-redis"] {
        assert!(block.contains(must), "the quick start no longer says {must:?}: update this test");
    }
    let dir = Scratch::new("quickstart");
    let (redis_port, sim_port) = two_free_ports();
    let _redis = RedisGuard(redis_port);
    let bin_dir = qfrefund_bin().parent().unwrap().to_owned();
    let redis_dir = dir.path("redis");
    // The build is the test harness's; everything else runs as written. Before the clean-up, wait
    // for the refund to be final, and keep its record for the assertions below.
    // (Through placeholders, so that a port chosen here cannot be rewritten by the next swap.)
    let script = block
        .replace("cargo build --release -p qfrefund\n", "")
        .replace("$PWD/target/release", "@BIN@")
        .replace("6390", "@REDIS_PORT@")
        .replace("8480", "@SIM_PORT@")
        .replace("/tmp/qfrefund-redis", "@REDIS_DIR@")
        .replace("@BIN@", bin_dir.to_str().unwrap())
        .replace("@REDIS_PORT@", &redis_port.to_string())
        .replace("@SIM_PORT@", &sim_port.to_string())
        .replace("@REDIS_DIR@", redis_dir.to_str().unwrap())
        .replace(
            "# 5. Clean up\n",
            "for _ in $(seq 150); do qfrefund status RF-1001 --output json | grep -q '\"succeeded\"' && break; \
             sleep 0.2; done\nqfrefund status RF-1001 --output json > final.json\n",
        );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir.0)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &dir.0)
        .env("QFREFUND_SHARDS", testkit::test_shards().to_string())
        .output()
        .unwrap();
    let logs = |f: &str| std::fs::read_to_string(dir.path(f)).unwrap_or_default();
    let said = format!(
        "stdout:\n{}\nstderr:\n{}\nworker.log:\n{}\nsim.log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs("worker.log"),
        logs("sim.log")
    );
    assert!(out.status.success(), "the quick start failed ({}):\n{said}", out.status);

    let record: serde_json::Value = serde_json::from_str(&logs("final.json")).expect("final.json");
    assert_eq!(record["state"], "succeeded", "{record}\n{said}");
    assert!(record["refund_syssn"].as_str().is_some_and(|s| !s.is_empty()), "QFPay's refund syssn: {record}");
    assert_eq!(record["submits"], 1, "one refund sent to QFPay: {record}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RF-1001 was enqueued before with the same request"),
        "the second enqueue is answered as the same request:\n{said}"
    );
    // A newcomer's first run logs no warning beyond the one the quick start accepts (no archive).
    let worker_log = logs("worker.log");
    let warnings: Vec<_> =
        worker_log.lines().filter(|l| l.contains(" WARN ") && !l.contains("no archive configured")).collect();
    assert!(warnings.is_empty(), "unexpected warnings:\n{said}");

    // The clean-up leaves nothing behind: Redis and the simulator are gone, and so is the data.
    for port in [redis_port, sim_port] {
        let closed = (0..50).any(|_| {
            let refused = TcpStream::connect(("127.0.0.1", port)).is_err();
            if !refused {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            refused
        });
        assert!(closed, "port {port} still answers after the clean-up");
    }
    assert!(!redis_dir.exists(), "the clean-up removes the Redis directory");
}
