//! Each command's `--help` ends with the environment variables it reads, taken from the settings
//! tree (so they cannot drift from what the command does read).

use super::{Declared, declared, render::default_text};

/// The sections of the tree `command` reads.
fn sections(command: &str) -> &'static [&'static str] {
    match command {
        "worker" => &["", "worker", "merchants"],
        "serve" => &["", "api", "merchants", "worker.archive"],
        "qfpay" => &["merchants", "worker.http_"],
        "reconcile" => &["", "merchants", "worker.http_"],
        "prune" | "status" => &[
            "",
            "worker.archive",
            "worker.retention_s",
            "worker.summary_after_s",
            "worker.idempotency_retention_s",
            "worker.audit_retention_s",
        ],
        "sim" | "completions" | "man" | "help" => &[],
        "config" => &["", "worker", "api", "merchants"],
        _ => &["", "merchants"],
    }
}

fn reads(command: &str, d: &Declared) -> bool {
    !d.field.env.is_empty()
        && sections(command).iter().any(|s| match *s {
            "" => !d.path.contains('.'),
            "worker" | "api" | "merchants" => d.path.starts_with(&format!("{s}.")),
            prefix => d.path.starts_with(prefix),
        })
}

/// The text after a command's help: its variables, each with its default; and how many.
fn environment(command: &str) -> Option<(String, usize)> {
    let rows: Vec<String> = declared()
        .iter()
        .filter(|d| reads(command, d))
        .map(|d| {
            format!(
                "  {:<36} {} [default: {}]",
                d.field.env,
                d.path,
                default_text(&d.path, d.field.kind).replace('`', "")
            )
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let text = format!(
        "Environment (over the config file; every setting: `qfrefund config reference`):\n  {:<36} the file's key\n{}\n  QFREFUND_CONFIG, QFREFUND_SECRETS_DIR, QFREFUND_LOG_FORMAT, RUST_LOG",
        "variable",
        rows.join("\n")
    );
    Some((text, rows.len()))
}

/// `cmd` with every subcommand's environment appended to its long help (`--help`), and a line
/// saying how many it reads to its short help (`-h`).
pub fn with_environment(mut cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in names {
        if let Some((text, n)) = environment(&name) {
            let short =
                format!("Environment: reads {n} QFREFUND_*/QFPAY_* variables over the config file (--help lists them)");
            cmd = cmd.mut_subcommand(&name, |sub| sub.after_help(short).after_long_help(text));
        }
    }
    cmd
}
