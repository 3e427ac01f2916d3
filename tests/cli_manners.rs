//! How the `qfrefund` binary behaves at the shell: bad values reach the validator and are named,
//! an unknown log format is refused, a closed pipe ends output quietly, no colour codes where no
//! terminal reads them, and a Redis URL that is wrong is told apart from a Redis that is not there.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Output, Stdio};

use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{env_for, qfrefund_bin};
use testkit::{RedisServer, unique_namespace};

fn run(env: &HashMap<String, String>, args: &[&str]) -> Output {
    Command::new(qfrefund_bin()).args(args).env_clear().envs(env).output().unwrap()
}

#[test]
fn a_negative_amount_reaches_the_validator_which_names_the_field() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("manners"), "http://127.0.0.1:1");
    let s = generated_syssn(1);
    for (flag, field) in [("--amount", "amount"), ("--orig-amount", "orig_amount")] {
        let mut args = vec!["enqueue", "--syssn", &s, "--out-trade-no", "RF-N1", "--amount", "100"];
        if flag == "--amount" {
            args[6] = "-5";
        } else {
            args.extend([flag, "-5"]);
        }
        let out = run(&env, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "invalid input: {err}");
        assert!(err.contains(&format!("{field}: must be positive")), "{err}");
    }
}

#[test]
fn an_unknown_log_format_is_refused_and_logs_carry_no_colour_off_a_terminal() {
    let mut env = HashMap::new();
    env.insert("QFREFUND_LOG_FORMAT".to_owned(), "xml".to_owned());
    let out = run(&env, &["stats"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("QFREFUND_LOG_FORMAT: unknown format \"xml\""));
    // A Redis that is not there: the error (and any log line) is plain text in a pipe.
    let env = env_for("redis://127.0.0.1:1", &unique_namespace("manners"), "http://127.0.0.1:1");
    let out = run(&env, &["stats"]);
    assert_eq!(out.status.code(), Some(75), "unavailable: retry");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.stderr.contains(&0x1b), "no ANSI escape in {err:?}");
    // The error once, each cause once, and what to try.
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert!(err.contains("hint: is redis-server running there? Point QFREFUND_REDIS_URL"), "{err}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `qfrefund man | true`: the reader is gone before the first write (the child takes
    // milliseconds to start; the pipe is closed at once).
    for args in [&["man"][..], &["completions", "bash"]] {
        let mut child =
            Command::new(qfrefund_bin()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: {status:?} {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    let bash = run(&HashMap::new(), &["completions", "bash"]);
    assert!(bash.status.success() && String::from_utf8_lossy(&bash.stdout).contains("qfrefund"));
    // The same for a command that reads the ledger and prints a line per refund.
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("manners-pipe"), "http://127.0.0.1:1");
    let s = generated_syssn(2);
    for i in 0..3 {
        let otn = format!("RF-P{i}");
        assert!(run(&env, &["enqueue", "--syssn", &s, "--out-trade-no", &otn, "--amount", "1"]).status.success());
    }
    for args in [&["list"][..], &["events"], &["config", "show"], &["config", "example"]] {
        let mut child = Command::new(qfrefund_bin())
            .args(args)
            .env_clear()
            .envs(&env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: {status:?} {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn an_import_report_says_when_no_worker_is_alive_and_a_timeout_means_run_it_again() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("manners-report"), "http://127.0.0.1:1");
    let dir = qfrefund_e2e::Scratch::new("manners-report");
    let csv = dir.path("r.csv");
    std::fs::write(&csv, format!("syssn,out_trade_no,txamt\n{},RF-R1,5\n", generated_syssn(4))).unwrap();
    let report = dir.path("r.report.csv");
    let args = ["import", csv.to_str().unwrap(), "--report", report.to_str().unwrap(), "--report-timeout", "1"];
    let out = run(&env, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "not final in time: run it again: {err}");
    assert!(err.contains("no worker is alive"), "{err}");
    assert!(std::fs::read_to_string(&report).unwrap().contains("RF-R1,accepted,queued"));
}

#[test]
fn a_redis_url_that_is_no_redis_url_or_no_redis_gets_a_hint_that_says_which() {
    // Not a URL at all, or not one of Redis: refused before connecting (exit 2), with the forms.
    for url in ["localhost:6379", "http://127.0.0.1:6379", "redis://127.0.0.1:99999", "redis+sentinel://h:26379"] {
        let env = env_for(url, &unique_namespace("manners-url"), "http://127.0.0.1:1");
        let out = run(&env, &["stats"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains("QFREFUND_REDIS_URL") && err.contains("expected redis://host:port"), "{url}: {err}");
    }
    // A Redis that is not there: the error names where it looked, never a password in the URL.
    for url in ["redis://:pw-s3cret@127.0.0.1:1", "redis+sentinel://127.0.0.1:1/mymaster?sentinel_password=pw-s3cret"] {
        let env = env_for(url, &unique_namespace("manners-pw"), "http://127.0.0.1:1");
        let out = run(&env, &["stats"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{err}");
        assert!(err.contains("127.0.0.1:1") && !err.contains("pw-s3cret"), "{err}");
    }
    // A server that answers, but not in Redis' protocol (here an HTTP server).
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in http.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let env = env_for(&format!("redis://127.0.0.1:{port}"), &unique_namespace("manners-resp"), "http://127.0.0.1:1");
    let err = String::from_utf8_lossy(&run(&env, &["stats"]).stderr).to_string();
    assert!(err.contains("hint: that server does not speak Redis' protocol (RESP)"), "{err}");
}

#[test]
fn a_log_line_in_a_pipe_carries_no_colour() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("manners-warn"), "http://127.0.0.1:1");
    let dir = qfrefund_e2e::Scratch::new("manners-warn");
    std::fs::write(dir.path("one.csv"), format!("syssn,out_trade_no,txamt\n{},RF-W1,1\n", generated_syssn(1))).unwrap();
    let out = run(&env, &["import", dir.path("one.csv").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    // The WARN that no worker has used this ledger: a tracing line, plain in a pipe.
    assert!(err.contains(" WARN ") && err.contains("no worker has used the ledger"), "{err}");
    assert!(!out.stderr.contains(&0x1b), "no ANSI escape in {err:?}");
}
