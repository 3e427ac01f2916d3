//! What producers (`enqueue`, `import`, the library) are told when Redis cannot take a refund now:
//! never "refused" or "not created" for a write that may have happened.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output};

use ledger::{Ledger, LedgerConfig};
use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{Scratch, env_for, qfrefund_bin};
use testkit::{RedisServer, unique_namespace};

fn run(env: &HashMap<String, String>, args: &[&str]) -> Output {
    Command::new(qfrefund_bin()).args(args).env_clear().envs(env).output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn lines_of(v: &serde_json::Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|l| l["line"].as_u64().unwrap()).collect()
}

/// A Redis at `maxmemory` with `noeviction` answers OOM to the scripts after the one that filled
/// it, in the middle of a pipelined chunk: the lines before were written.
#[tokio::test]
async fn import_at_maxmemory_reports_lines_of_unknown_fate_as_unknown_never_as_refused() {
    let scratch = Scratch::new("import-oom");
    let redis = RedisServer::builder()
        .arg("--maxmemory")
        .arg("4mb")
        .arg("--maxmemory-policy")
        .arg("noeviction")
        .start()
        .unwrap();
    let ns = unique_namespace("import-oom");
    let env = env_for(&redis.url(), &ns, "http://127.0.0.1:1");
    let n = 8_000;
    let mut csv = String::from("syssn,out_trade_no,txamt,orig_txamt\n");
    for i in 0..n {
        csv.push_str(&format!("{},RF-OOM-{i:05},100,1000\n", generated_syssn(i as u64 + 1)));
    }
    let file = scratch.path("big.csv");
    std::fs::write(&file, csv).unwrap();
    let out = run(&env, &["import", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let sum = json(&out);
    assert_eq!(out.status.code(), Some(75), "re-run needed: {stderr}");
    assert!(sum["not_written"].as_u64().unwrap() + sum["unknown"].as_u64().unwrap() > 0, "Redis filled up: {sum}");
    assert!(stderr.contains("re-run the import: it is idempotent"), "{stderr}");
    assert_eq!(sum["advice"], "outcome unknown: re-run the import: it is idempotent");

    // What the report says against what is in Redis.
    let ledger = Ledger::connect(
        &redis.url(),
        LedgerConfig { namespace: ns, ..LedgerConfig::default().with_shards(testkit::test_shards()) },
    )
    .await
    .unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("RF-OOM-{i:05}")).collect();
    let mut present = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        for r in ledger.get_many(ledger.shard_of(ledger::DEFAULT_MERCHANT), chunk).await.unwrap() {
            present.insert(r.out_trade_no);
        }
    }
    let id_of = |line: u64| format!("RF-OOM-{:05}", line - 2);
    let refused: Vec<u64> = lines_of(&sum["not_written_lines"]).into_iter().chain(lines_of(&sum["invalid"])).collect();
    let wrongly_refused: Vec<u64> = refused.iter().copied().filter(|l| present.contains(&id_of(*l))).collect();
    assert!(wrongly_refused.is_empty(), "reported refused, yet written: {} lines", wrongly_refused.len());
    let unknown = sum["unknown"].as_u64().unwrap() as usize;
    let accepted = sum["accepted"].as_u64().unwrap() as usize;
    assert!(
        accepted <= present.len() && present.len() <= accepted + unknown,
        "{accepted} + {unknown} vs {}",
        present.len()
    );
    for l in sum["unknown_lines"].as_array().unwrap() {
        assert!(l["error"].as_str().unwrap().contains("re-run the import: it is idempotent"), "{l}");
    }
}

/// The library's own answer to a write whose reply never came: outcome unknown, retry the same.
#[tokio::test]
async fn the_library_says_outcome_unknown_when_redis_froze_after_the_write_was_sent() {
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig {
        namespace: unique_namespace("lib-frozen"),
        response_timeout: std::time::Duration::from_millis(500),
        ..LedgerConfig::default().with_shards(testkit::test_shards())
    };
    let ledger = Ledger::connect(&redis.url(), config).await.unwrap();
    let s = generated_syssn(7);
    ledger.enqueue(ledger::NewRefund::new(&s, "RF-L0", 1)).await.unwrap();
    redis.pause(true).unwrap();
    let err = ledger.enqueue(ledger::NewRefund::new(&s, "RF-L1", 1)).await.unwrap_err();
    redis.pause(false).unwrap();
    assert!(err.outcome_unknown(), "{err}");
    assert!(err.is_retryable(), "{err}");
    let again = ledger.enqueue(ledger::NewRefund::new(&s, "RF-L1", 1)).await.unwrap();
    assert!(matches!(again, ledger::Enqueued::Duplicate(_)), "it had been written: {again:?}");
    let invalid = ledger.enqueue(ledger::NewRefund::new(&s, "RF L2", 1)).await.unwrap_err();
    assert!(!invalid.outcome_unknown() && !invalid.is_retryable());
}

/// Fills a Redis started with a small `maxmemory` and `noeviction` until it refuses writes.
async fn fill_to_maxmemory(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // Large values first, then ever smaller ones: a rejected large one only looked full because of
    // its own query buffer.
    let mut size = 256 * 1024;
    for i in 0..10_000 {
        let r: redis::RedisResult<()> =
            redis::cmd("SET").arg(format!("junk:{i}")).arg("x".repeat(size)).query_async(&mut con).await;
        if r.is_err() {
            if size == 64 {
                return;
            }
            size /= 4;
        }
    }
    panic!("Redis never reached maxmemory");
}

#[tokio::test]
async fn ping_is_unhealthy_when_redis_answers_but_refuses_writes_at_maxmemory() {
    let redis = RedisServer::builder()
        .arg("--maxmemory")
        .arg("3mb")
        .arg("--maxmemory-policy")
        .arg("noeviction")
        .start()
        .unwrap();
    let env = env_for(&redis.url(), &unique_namespace("ping-oom"), "http://127.0.0.1:1");
    assert!(run(&env, &["ping"]).status.success(), "{}", String::from_utf8_lossy(&run(&env, &["ping"]).stderr));
    // The filler's own buffers are freed when its connection closes, which can bring Redis back
    // just under maxmemory on a busy machine: fill again until full is what ping sees.
    let mut rounds = 0;
    let out = loop {
        fill_to_maxmemory(&redis.url()).await;
        let out = run(&env, &["ping"]);
        rounds += 1;
        if out.status.code() == Some(1) || rounds == 5 {
            break out;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "PING answers, but no refund can be written: {stderr}");
    assert!(stderr.contains("does not take writes") && stderr.contains("OOM"), "{stderr}");
}

#[tokio::test]
async fn producers_refuse_an_evicting_redis_and_one_without_aof_as_workers_do() {
    let s = generated_syssn(3);
    let enqueue = ["enqueue", "--syssn", &s, "--out-trade-no", "RF-EV1", "--amount", "5"];
    let scratch = Scratch::new("producer-refusal");
    let csv = scratch.path("one.csv");
    std::fs::write(&csv, format!("syssn,out_trade_no,txamt\n{s},RF-EV2,5\n")).unwrap();
    let import = ["import", csv.to_str().unwrap()];

    let evicting = RedisServer::builder().arg("--maxmemory-policy").arg("allkeys-lru").start().unwrap();
    let env = env_for(&evicting.url(), &unique_namespace("evicting"), "http://127.0.0.1:1");
    for args in [&enqueue[..], &import[..], &["ping"][..]] {
        let out = run(&env, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("maxmemory-policy is allkeys-lru"), "{args:?}: {stderr}");
    }
    let l = Ledger::connect_producer(&evicting.url(), LedgerConfig::default(), false).await;
    assert!(matches!(l, Err(ledger::NotUsable::Refused(_))), "the library refuses it too");

    let no_aof = RedisServer::start().unwrap();
    let ns = unique_namespace("no-aof");
    let mut env = env_for(&no_aof.url(), &ns, "http://127.0.0.1:1");
    env.remove("QFREFUND_REQUIRE_AOF");
    let out = run(&env, &enqueue);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("appendonly no"), "{stderr}");
    env.insert("QFREFUND_REQUIRE_AOF".into(), "off".into());
    assert!(run(&env, &enqueue).status.success(), "unless told otherwise");
    let l = Ledger::connect_producer(
        &no_aof.url(),
        LedgerConfig { namespace: ns, ..LedgerConfig::default().with_shards(testkit::test_shards()) },
        true,
    )
    .await;
    assert!(matches!(l, Err(ledger::NotUsable::Refused(_))));
}

#[tokio::test]
async fn enqueue_and_import_refuse_a_merchant_no_configuration_or_live_worker_knows() {
    let redis = RedisServer::start().unwrap();
    let ns = unique_namespace("merchant");
    let env = env_for(&redis.url(), &ns, "http://127.0.0.1:1");
    let s = generated_syssn(11);
    let enqueue = |otn: &str, m: &str| {
        run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", otn, "--amount", "5", "--merchant", m])
    };
    let out = enqueue("RF-U1", "nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown merchant \"nobody\"") && stderr.contains("known merchants: default"), "{stderr}");
    assert!(enqueue("RF-U2", "default").status.success());

    let scratch = Scratch::new("merchant-import");
    let csv = scratch.path("m.csv");
    std::fs::write(&csv, format!("syssn,out_trade_no,txamt,merchant\n{s},RF-U3,5,default\n{s},RF-U4,5,nobody\n"))
        .unwrap();
    let out = run(&env, &["import", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let sum = json(&out);
    assert_eq!(sum["accepted"], 1);
    assert_eq!(sum["invalid"][0]["line"], 3);
    assert!(sum["invalid"][0]["error"].as_str().unwrap().starts_with("merchant: unknown merchant"), "{sum}");

    // Workers announce what they serve: a producer without credentials can check too.
    let ledger = Ledger::connect(
        &redis.url(),
        LedgerConfig { namespace: ns.clone(), ..LedgerConfig::default().with_shards(testkit::test_shards()) },
    )
    .await
    .unwrap();
    let mut worker = qfrefund_e2e::WorkerProcess::spawn(&env, scratch.path("worker.log"));
    let mut served = Vec::new();
    for _ in 0..100 {
        served = ledger.served_merchants().await.unwrap();
        if !served.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    worker.kill9();
    assert_eq!(served, ["default"]);
    ledger.announce_served(&["shop2".into()], std::time::Duration::from_secs(30)).await.unwrap();
    assert!(enqueue("RF-U5", "shop2").status.success(), "served by a live worker");
    let mut ghost = ledger::NewRefund::new(&s, "RF-U6", 5);
    ghost.merchant = Some("ghost".into());
    ledger.enqueue(ghost).await.unwrap();
    let stats = json(&run(&env, &["stats"]));
    assert_eq!(stats["unserved_refunds"]["ghost"], 1, "{stats}");
    assert!(stats.get("webhooks_failed").is_some(), "{stats}");
}

#[test]
fn qfpay_refund_outside_the_ledger_needs_the_flag_unless_it_is_the_simulator() {
    let scratch = Scratch::new("qfpay-bypass");
    let mut env = env_for("redis://127.0.0.1:1", "unused", "https://openapi-hk.qfapi.com");
    env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    let refund =
        ["qfpay", "refund", "--syssn", "20251125000000000000000001", "--out-trade-no", "RF-B1", "--amount", "1"];
    let out = run(&env, &refund);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--i-understand-this-bypasses-the-ledger"), "{stderr}");
    // The simulator (loopback) needs no flag: this one fails to connect, not on the flag.
    env.insert("QFPAY_BASE_URL".into(), "http://127.0.0.1:1".into());
    let out = run(&env, &refund);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("bypasses the ledger"), "loopback is the simulator");
    // --merchant takes the configured merchant's base URL (and credentials).
    let config = scratch.path("q.toml");
    std::fs::write(
        &config,
        "[merchants.shop2]\napp_code = \"SHOP2\"\nclient_key_env = \"SHOP2_KEY\"\nbase_url = \"https://openapi-hk.qfapi.com\"\n",
    )
    .unwrap();
    env.insert("SHOP2_KEY".into(), "K".repeat(32));
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(&refund);
    args.extend_from_slice(&["--merchant", "shop2"]);
    let out = run(&env, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to refund through https://openapi-hk.qfapi.com"), "{stderr}");
    let mut args2 = args.clone();
    let last = args2.len() - 1;
    args2[last] = "nobody";
    let stderr = String::from_utf8_lossy(&run(&env, &args2).stderr).into_owned();
    assert!(stderr.contains("no merchant \"nobody\"") && stderr.contains("shop2"), "{stderr}");
}

/// `enqueue` and `import` into a ledger no worker has used say so: with another namespace or tag
/// than the workers', nothing would ever send those refunds.
#[test]
fn the_first_enqueue_into_a_ledger_no_worker_used_warns() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("first-enqueue"), "http://127.0.0.1:1");
    let s = generated_syssn(1);
    let first = run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-W1", "--amount", "5"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(said.contains("no worker has used the ledger") && said.contains("QFREFUND_NAMESPACE"), "{said}");
    // The ledger is laid out now: the next enqueue says nothing of it.
    let second = run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", "RF-W2", "--amount", "5"]);
    assert!(second.status.success());
    assert!(!String::from_utf8_lossy(&second.stderr).contains("no worker has used"));
}
