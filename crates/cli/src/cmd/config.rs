//! `qfrefund config show` and `qfrefund config check`.

use std::path::Path;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use crate::config::Config;
use crate::output::Rows;
use crate::settings::render;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration: every setting's value (secrets redacted) and where it
    /// came from (default, the file, or which environment variable).
    Show,
    /// Print an example configuration file: every setting at its default, with its meaning and
    /// its environment variable (`qfrefund config example > qfrefund.toml`).
    Example,
    /// Print the reference of every setting as a Markdown table (as in docs/configuration.md).
    Reference,
    /// Check the configuration without starting anything: the ledger's settings, every merchant
    /// (credentials included), the workers' and the API's settings. Exit 0 when valid, else 2
    /// with what is wrong.
    Check {
        /// Also require that this part can start (a worker needs a merchant, the API a token).
        #[arg(long = "for", value_enum)]
        role: Option<Role>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Worker,
    Api,
    Producer,
}

pub fn run(config: Option<&Path>, cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Show => show(config),
        ConfigCommand::Check { role } => check(config, role),
        ConfigCommand::Example => crate::cmd::docs::print(render::example_toml().as_bytes()),
        ConfigCommand::Reference => crate::cmd::docs::print(render::reference_table().as_bytes()),
    }
}

fn show(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = crate::settings::load(config)?;
    let mut rows = Rows::new(&[("key", 36), ("value", 28), ("source", 0)]);
    for row in render::effective(&loaded) {
        rows.print(&row)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn check(config: Option<&Path>, role: Option<Role>) -> anyhow::Result<ExitCode> {
    let c = Config::load(config)?;
    let s = &c.loaded.settings;
    // One row per part checked: the part, and what was found.
    let mut said: Vec<(&str, String)> = vec![(
        "ledger",
        format!("namespace {:?}, {} shard(s), Redis {}", s.namespace, s.shards, ledger::redact_url(&c.redis_url)),
    )];
    said.extend(c.ledger.name_warnings().into_iter().map(|w| ("warning", w)));
    let merchants = c.merchants()?;
    let mut names: Vec<&String> = merchants.keys().collect();
    names.sort();
    if merchants.is_empty() {
        if role == Some(Role::Worker) {
            return Err(crate::exit::invalid(anyhow::anyhow!(
                "a worker needs a merchant: set QFPAY_APP_CODE, QFPAY_CLIENT_KEY and QFPAY_BASE_URL, or [merchants.NAME] in the config file"
            )));
        }
        said.push(("worker", "no merchant configured (a worker would refuse to start)".into()));
    } else {
        let w = c.worker()?;
        let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        said.push(("worker", format!("valid, concurrency {}, merchants {}", w.concurrency, names.join(", "))));
    }
    let r = c.retention()?;
    said.push((
        "retention",
        match &r.archive {
            Some(a) => format!("archive {}", archive::postgres::redact(a)),
            None => "no archive (nothing is ever removed from Redis)".into(),
        },
    ));
    if s.api.tokens.any() {
        let (listen, a) = c.api()?;
        said.push(("api", format!("valid, listening on {listen}, {} token(s)", a.tokens.len())));
    } else {
        if role == Some(Role::Api) {
            return Err(crate::exit::invalid(anyhow::anyhow!(
                "the API needs at least one token: set QFREFUND_API_TOKENS=name:role:token or [[api.tokens]] in the config file"
            )));
        }
        said.push(("api", "no token configured (`serve` would refuse to start)".into()));
    }
    said.push(("configuration", "valid".into()));
    // As `--output` says: a table on a terminal.
    let mut rows = Rows::new(&[("part", 13), ("found", 0)]);
    for (part, found) in &said {
        rows.print(&serde_json::json!({"part": part, "found": found}))?;
    }
    Ok(ExitCode::SUCCESS)
}
