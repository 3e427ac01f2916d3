//! What every entry point (worker, `serve`, the CLI producers) checks about Redis before it starts:
//! a set-up that could never confirm a write is refused; one whose durability is weaker than the
//! documentation promises is named in a WARN.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{env_for, qfrefund_bin};
use testkit::{Aof, RedisServer, unique_namespace};

/// Runs `qfrefund args`, killed after `limit` (a worker or `serve` that starts runs for ever).
fn run_for(env: &HashMap<String, String>, args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(qfrefund_bin())
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out: Output = child.wait_with_output().unwrap();
    let code = out.status.code();
    (code, format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn enqueue_args(otn: &str) -> Vec<String> {
    ["enqueue", "--syssn", &generated_syssn(3), "--out-trade-no", otn, "--amount", "5"].map(String::from).to_vec()
}

#[test]
fn wait_replicas_above_the_connected_replicas_refuses_to_start_naming_both_numbers() {
    let redis = RedisServer::start().unwrap();
    let mut env = env_for(&redis.url(), &unique_namespace("wait-replicas"), "http://127.0.0.1:1");
    env.insert("QFREFUND_REDIS_WAIT_REPLICAS".into(), "2".into());
    // The claim's WAIT comes out of the tests' short lease (3 s, HTTP 2 s): keep it within.
    env.insert("QFREFUND_REDIS_WAIT_TIMEOUT_MS".into(), "400".into());
    env.insert("QFREFUND_API_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("QFREFUND_API_TOKENS".into(), "shop:produce:startup-token-0123456789".into());
    let enqueue = enqueue_args("RF-W1");
    let enqueue: Vec<&str> = enqueue.iter().map(String::as_str).collect();
    for args in [&["worker"][..], &["serve"][..], &enqueue[..], &["ping"][..]] {
        let (code, out) = run_for(&env, args, Duration::from_secs(15));
        assert_eq!(code, Some(1), "{args:?} refuses to start: {out}");
        assert!(out.contains("QFREFUND_REDIS_WAIT_REPLICAS is 2"), "{args:?} names the setting: {out}");
        assert!(out.contains("0 connected replica(s)"), "{args:?} names the replicas: {out}");
    }

    // One replica attached: waiting for one is fine.
    let replica = RedisServer::builder().arg("--replicaof").arg("127.0.0.1").arg(&redis.port().to_string()).start();
    let _replica = replica.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    env.insert("QFREFUND_REDIS_WAIT_REPLICAS".into(), "1".into());
    loop {
        let (code, out) = run_for(&env, &enqueue, Duration::from_secs(15));
        if code == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "with a replica connected, wait_replicas 1 is accepted: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_redis_without_waitaof_and_appendfsync_everysec_warns_that_appendfsync_always_is_required() {
    let everysec = RedisServer::builder().aof(Aof::EverySec).start().unwrap();
    let version: String = {
        let c = redis::Client::open(everysec.url()).unwrap();
        let mut con = c.get_connection().unwrap();
        redis::cmd("INFO").arg("server").query(&mut con).unwrap()
    };
    if !version.contains("redis_version:7.0.") && !version.contains("redis_version:7.1.") {
        eprintln!("skipped: this redis-server has WAITAOF");
        return;
    }
    let mut env = env_for(&everysec.url(), &unique_namespace("everysec"), "http://127.0.0.1:1");
    env.remove("QFREFUND_REQUIRE_AOF");
    for args in [&["ping"][..], &["worker"][..]] {
        let (_, out) = run_for(&env, args, Duration::from_secs(4));
        assert!(out.contains("WARN") && out.contains("appendfsync always is required"), "{args:?}: {out}");
    }
    let always = RedisServer::builder().aof(Aof::Always).start().unwrap();
    let mut env = env_for(&always.url(), &unique_namespace("always"), "http://127.0.0.1:1");
    env.remove("QFREFUND_REQUIRE_AOF");
    let (code, out) = run_for(&env, &["ping"], Duration::from_secs(10));
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("appendfsync always is required"), "appendfsync always: no warning: {out}");
}

/// A `mchid` no QFPay request can carry would make every enquiry impossible to build: a
/// configuration error at start-up naming the merchant and the field, never a refund that waits.
#[test]
fn a_merchant_with_an_invalid_mchid_is_a_configuration_error_naming_merchant_and_field() {
    let scratch = qfrefund_e2e::Scratch::new("bad-mchid");
    let redis = RedisServer::start().unwrap();
    let mut env = env_for(&redis.url(), &unique_namespace("bad-mchid"), "http://127.0.0.1:1");
    let file = scratch.path("qfrefund.toml");
    std::fs::write(
        &file,
        "[merchants.shop]\napp_code = \"APP1\"\nclient_key = \"k-0123456789\"\nmchid = \"not a mchid!\"\n\
         base_url = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    env.insert("QFREFUND_CONFIG".into(), file.to_str().unwrap().into());
    let enqueue = enqueue_args("RF-M1");
    let enqueue: Vec<&str> = enqueue.iter().map(String::as_str).collect();
    for args in [&["worker"][..], &enqueue[..]] {
        let (code, out) = run_for(&env, args, Duration::from_secs(8));
        assert!(code.is_some_and(|c| c != 0), "{args:?} exits non-zero: {out}");
        assert!(out.contains("merchant shop: mchid"), "{args:?} names merchant and field: {out}");
    }
    // The default merchant's mchid from the environment, too.
    env.remove("QFREFUND_CONFIG");
    env.insert("QFPAY_MCHID".into(), "x".repeat(17));
    let (code, out) = run_for(&env, &["worker"], Duration::from_secs(8));
    assert!(code.is_some_and(|c| c != 0), "{out}");
    assert!(out.contains("merchant default: mchid: must be at most 16"), "{out}");
}
