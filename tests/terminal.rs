//! What only a person at a terminal sees, run under a real pseudo-terminal (util-linux `script`):
//! tables by default, the import's progress bar (bytes read of the file's size, rows per second,
//! time left) and `--report`'s "N final / M, oldest open Ns" line, and coloured log lines.
//! Off a terminal the same commands print JSON and no colour (`tests/cli_manners.rs`).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output};

use qfpay_sim::args::generated_syssn;
use qfrefund_e2e::{Scratch, env_for, qfrefund_bin};
use testkit::{RedisServer, unique_namespace};

/// `args` run by `qfrefund` on a pseudo-terminal; everything it wrote there, as one text.
fn on_a_terminal(env: &HashMap<String, String>, dir: &Scratch, args: &[&str]) -> (Output, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut cmd = quote(&qfrefund_bin().display().to_string());
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a));
    }
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(&dir.0)
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .output()
        .expect("util-linux `script`");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out, text)
}

/// `text` without its terminal escapes (`ESC [ … letter`) and carriage returns.
fn without_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' if chars.peek() == Some(&'[') => {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn a_terminal_gets_tables_a_progress_bar_the_report_line_and_colour() {
    let redis = RedisServer::start().unwrap();
    let env = env_for(&redis.url(), &unique_namespace("tty"), "http://127.0.0.1:1");
    let dir = Scratch::new("tty");
    let syssn = generated_syssn(1);
    let mut csv = String::from("syssn,out_trade_no,txamt\n");
    for i in 0..3000 {
        csv.push_str(&format!("{syssn},RF-T{i},1\n"));
    }
    std::fs::write(dir.path("refunds.csv"), &csv).unwrap();

    let (out, text) =
        on_a_terminal(&env, &dir, &["import", "refunds.csv", "--report", "r.csv", "--report-timeout", "1"]);
    // No worker runs, so the report's wait runs out: exit 75, "run it again to wait longer".
    assert_eq!(out.status.code(), Some(75), "{text}");
    let kib = format!("{:.2} KiB", csv.len() as f64 / 1024.0);
    assert!(text.contains(&format!("{kib}/{kib}")), "the bar counts the file's bytes ({kib}): {text}");
    assert!(text.contains("3000 rows (") && text.contains("/s)") && text.contains("(ETA "), "rows/s and ETA: {text}");
    assert!(text.contains("0 final / 3000, oldest open "), "the report's line: {text}");
    assert!(text.contains("warning: no worker is alive"), "{text}");
    // The summary is a table on a terminal, not JSON.
    let plain = without_escapes(&text);
    // (The bar's last frame may share the line: what follows `accepted` is the count alone.)
    assert!(plain.lines().any(|l| l.rsplit_once("accepted").is_some_and(|(_, n)| n.trim() == "3000")), "{plain}");
    // Log lines are coloured on a terminal (the WARN that no worker has used this ledger).
    assert!(text.contains("\x1b[33m WARN"), "a coloured WARN: {text:?}");

    let (out, text) = on_a_terminal(&env, &dir, &["list", "--limit", "2"]);
    assert!(out.status.success(), "{text}");
    let plain = without_escapes(&text);
    assert!(plain.starts_with("MERCHANT") && plain.contains("RF-T"), "a table by default: {plain}");
    assert!(!text.contains('{'), "no JSON: {text}");
}
