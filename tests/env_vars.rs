//! The documentation and the code agree: every `QFREFUND_*` variable the code reads is documented
//! (in the README or `docs/`, whose reference is generated from the settings tree), and every one
//! they name is read somewhere. Also: every command
//! that calls QFPay defaults to the same HTTP timeouts, the ones the README states.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use qfrefund_e2e::qfrefund_bin;

/// Names the README may mention although no code under `crates/` reads them, each with why.
/// (Empty today: the chaos and process suites' knobs live under `tests/` and are documented with
/// `make chaos`, not in the configuration reference.)
const README_ONLY: &[&str] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The README and every page under `docs/`.
fn documentation() -> String {
    let mut text = std::fs::read_to_string(root().join("README.md")).unwrap();
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            text.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    text
}

/// The reference of every setting, generated from the settings tree.
fn reference() -> String {
    std::fs::read_to_string(root().join("docs/configuration.md")).unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `QFREFUND_…` names in `text`; with `quoted`, only whole string literals (`"QFREFUND_X"`), which
/// is how the code reads them (`env("…")`, `std::env::var("…")`, clap's `env = "…"`).
fn names(text: &str, quoted: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let needle = if quoted { "\"QFREFUND_" } else { "QFREFUND_" };
    let mut rest = text;
    while let Some(i) = rest.find(needle) {
        let start = i + needle.len() - "QFREFUND_".len();
        let tail = &rest[start..];
        let len =
            tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        let name = tail[..len].trim_end_matches('_');
        // A bare prefix ("QFREFUND_", as in `starts_with("QFREFUND_")`) names no variable.
        if name.len() > "QFREFUND_".len() && (!quoted || tail[len..].starts_with('"')) {
            out.insert(name.to_owned());
        }
        rest = &tail[len..];
    }
    out
}

#[test]
fn every_qfrefund_variable_the_code_reads_is_documented_and_every_documented_one_is_read() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let mut read = BTreeSet::new();
    for f in &files {
        read.extend(names(&std::fs::read_to_string(f).unwrap(), true));
    }
    assert!(read.contains("QFREFUND_REDIS_URL") && read.len() > 20, "the scan finds the code's variables: {read:?}");
    let documented = names(&documentation(), false);
    let undocumented: Vec<&String> = read.difference(&documented).collect();
    assert!(undocumented.is_empty(), "read by the code but not documented: {undocumented:?}");
    let unread: Vec<&String> = documented.difference(&read).filter(|n| !README_ONLY.contains(&n.as_str())).collect();
    assert!(unread.is_empty(), "documented but read by no code under crates/: {unread:?}");
}

/// `qfrefund qfpay` used its own connect timeout (3 s, the library's) and workers another (2 s);
/// the library's whole-exchange default was 15 s against the workers' 6 s. One constant now.
#[test]
fn every_command_that_calls_qfpay_defaults_to_the_http_timeouts_the_reference_states() {
    let reference = reference();
    let documented = |var: &str| -> u64 {
        let row = reference.lines().find(|l| l.starts_with(&format!("| `{var}` |"))).unwrap();
        row.split('|').nth(3).unwrap().trim().parse().unwrap()
    };
    let (timeout, connect) = (documented("QFREFUND_HTTP_TIMEOUT_MS"), documented("QFREFUND_HTTP_CONNECT_TIMEOUT_MS"));
    let lib = qfpay::ClientConfig::default();
    assert_eq!(lib.timeout.as_millis() as u64, timeout, "the library's default");
    assert_eq!(lib.connect_timeout.as_millis() as u64, connect, "the library's default");
    for sub in ["refund", "query"] {
        let out = Command::new(qfrefund_bin()).args(["qfpay", sub, "--help"]).env_clear().output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for (flag, want) in [("--http-timeout-ms", timeout), ("--http-connect-timeout-ms", connect)] {
            let after =
                help.split(&format!("{flag} <")).nth(1).unwrap_or_else(|| panic!("qfpay {sub} takes {flag}:\n{help}"));
            let default = after.split("[default: ").nth(1).and_then(|d| d.split(']').next());
            assert_eq!(default, Some(want.to_string().as_str()), "qfpay {sub} {flag}:\n{help}");
        }
    }
}

/// The quiet window was written as 23:30–00:30 in one place and 23:25–00:35 in another. One
/// meaning now: QFPay refuses 23:30–00:30 UTC+8; workers submit nothing 23:25–00:35 (the margin).
#[test]
fn the_quiet_window_is_written_one_way_and_matches_the_code() {
    let docs = std::fs::read_to_string(root().join("README.md")).unwrap() + &reference();
    for line in docs.lines().filter(|l| l.contains("23:30–00:30")) {
        assert!(line.contains("QFPay"), "23:30–00:30 is QFPay's own window, said so: {line}");
    }
    let reference = reference();
    let env_row = reference.lines().find(|l| l.starts_with("| `QFREFUND_QUIET_WINDOW` |")).unwrap();
    assert!(env_row.contains("23:25–00:35"), "{env_row}");
    let at = |t: &str| qfpay::time::near_refund_blackout(t.parse::<qfpay::Txdtm>().unwrap());
    assert!(!at("2025-11-25 23:24:59") && at("2025-11-25 23:25:00"), "workers stop at 23:25");
    assert!(at("2025-11-26 00:34:59") && !at("2025-11-26 00:35:00"), "and start again at 00:35");
}
