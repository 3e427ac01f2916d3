//! `qfrefund`: the command line. Parsing, configuration and output only; the logic lives in the
//! library crates (`ledger`, `worker`, `qfpay`, `qfpay_sim`).

mod archived;
mod cmd;
mod config;
mod connect;
mod exit;
mod groups;
mod output;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qfrefund", version, about = "Durable QFPay refunds: at most one refund per (merchant, out_trade_no)")]
struct Cli {
    /// TOML configuration file (also QFREFUND_CONFIG, where a blank value means none); the
    /// environment's settings override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// How to print what commands find: json (one object per line; the default when standard
    /// output is not a terminal), table (the default on a terminal) or csv.
    #[arg(long, global = true, value_enum)]
    output: Option<output::Format>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process refunds until SIGTERM/SIGINT; run as many side by side as you like.
    Worker,
    /// Enqueue one refund; prints its record (a table on a terminal, else JSON; see --output).
    Enqueue(cmd::enqueue::EnqueueArgs),
    /// Enqueue every refund of a CSV (header syssn,out_trade_no,txamt[,orig_txamt,mchid,udid,merchant])
    /// or JSON Lines file; prints a summary. Exit 0 when every line was accepted or a duplicate.
    Import(cmd::import::ImportArgs),
    /// Print one refund's record (exit 3 if unknown); an archived refund from the archive.
    Status {
        out_trade_no: String,
        /// The refund's merchant (out_trade_no is unique per merchant).
        #[arg(long, default_value = ledger::DEFAULT_MERCHANT)]
        merchant: String,
        /// Also the evidence of every request sent for it (parameters, signature, HTTP status,
        /// QFPay's answer, times) under "attempts".
        #[arg(long)]
        attempts: bool,
    },
    /// Print refunds, oldest first, filtered.
    List(cmd::list::ListArgs),
    /// Archive the final refunds past the retention now, then remove them from Redis (what the
    /// workers do in the background); `--dry-run` only says, per shard, what that would archive.
    Prune {
        #[arg(long)]
        dry_run: bool,
    },
    /// Allow retention to remove refunds from a ledger made by an older version: run it once no
    /// qfrefund process from before tombstones writes the ledger (one would take an archived
    /// refund's request again for a new refund). Ledgers made by this version allow it from the
    /// start, with compact tombstones.
    EnableRetention {
        /// Write compact tombstones from now on (a third of the memory), which only this version
        /// reads: only once no process of an older version reads or writes the ledger.
        #[arg(long)]
        compact: bool,
        /// Archive final refunds early, keeping summaries (see `QFREFUND_SUMMARY_AFTER_S`), which
        /// only this version reads: only once every process reading the ledger runs it.
        #[arg(long)]
        summaries: bool,
        /// Enqueue refunds fresh (under half the memory while they wait), which only this version
        /// claims: only once no process of an older version works the ledger. Processes already
        /// running switch when they restart.
        #[arg(long)]
        compact_queue: bool,
        /// Enqueue the old way again, before going back to an older version: it may work the
        /// ledger once `fresh_waiting` (in this command's answer) reads 0.
        #[arg(long, conflicts_with = "compact_queue")]
        no_compact_queue: bool,
    },
    /// Stop submitting a merchant's refunds (enquiries go on).
    /// (Audited with who and why, like every operator action.)
    Pause {
        merchant: String,
        #[arg(long, default_value = "paused by an operator")]
        reason: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Resume a paused merchant (after a configuration error is fixed, say); audited.
    Resume {
        merchant: String,
        #[arg(long, default_value = "resumed by an operator")]
        reason: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Look at a refund in needs_review again: enquire first if it was ever sent, else submit.
    Retry(cmd::operate::OperatorArgs),
    /// Settle a refund in needs_review as succeeded or failed, as established with QFPay.
    Resolve {
        #[command(flatten)]
        op: cmd::operate::OperatorArgs,
        #[arg(long, value_parser = ["succeeded", "failed"])]
        state: String,
        /// Accept a success that takes the payment past what its records say was paid, on QFPay's
        /// proof that the refund succeeded (audited as "resolve --force"; a refund never sent is
        /// still refused).
        #[arg(long)]
        force: bool,
    },
    /// Withdraw a refund that was never sent (queued).
    Cancel(cmd::operate::OperatorArgs),
    /// Enquire a refund waiting for an enquiry (pending) now rather than at its next due time:
    /// always safe, nothing but an enquiry is sent. Audited.
    Enquire(cmd::operate::OperatorArgs),
    /// Serve the HTTP API (POST/GET /v1/refunds, operator actions, QFPay notifications,
    /// /healthz, /readyz, /metrics, /openapi.json) on QFREFUND_API_LISTEN (default 127.0.0.1:8080).
    Serve,
    /// Print the outcome stream (one entry per transition), filtered; each `id` resumes (--from).
    Events(cmd::events::EventsArgs),
    /// Print the audit trail of operator actions (who, why, what).
    Audit {
        /// Start after this entry id.
        #[arg(long)]
        from: Option<String>,
    },
    /// Counts by state, the oldest non-final refund's age, the due backlog, the queue depth and
    /// paused merchants.
    Stats,
    /// The live workers, one row each: name, host, version, concurrency, refunds in flight,
    /// the merchants and shards it serves, when it started and last sent its heartbeat.
    Workers,
    /// Send given-up webhook deliveries again (they go back on the retry schedule, due now).
    Redeliver {
        /// Event ids, from `qfrefund list --webhook-failed`.
        ids: Vec<String>,
        /// Every given-up delivery.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Why (kept in the audit trail).
        #[arg(long, default_value = "redelivered from the command line")]
        reason: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// After upgrading a ledger from before refunds were merchant-scoped, once no process of that
    /// version runs: from now on each merchant's new refund is its own, even under an
    /// out_trade_no another merchant used (until then they share ids, as that version does).
    ScopeMerchants,
    /// Compare every refund created in a time window with QFPay's enquiry and write a CSV report
    /// (agree / disagree / open / unknown per refund); exit 1 if any disagrees or could not be checked.
    Reconcile(cmd::reconcile::ReconcileArgs),
    /// Health check for containers: exit 0 if a refund can be written now — Redis answers, takes
    /// writes (not at maxmemory, not read-only) and is set up not to lose refunds (or, with --http,
    /// if the URL answers 2xx), else 1 with the reason on stderr.
    Ping {
        /// Check this HTTP URL instead (e.g. http://127.0.0.1:9464/healthz).
        #[arg(long)]
        http: Option<String>,
    },
    /// Print a shell completion script to stdout (e.g. `qfrefund completions bash >
    /// /etc/bash_completion.d/qfrefund`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout (`qfrefund man | man -l -`), or write every
    /// command's page into a directory.
    Man {
        /// Write `qfrefund.1`, `qfrefund-worker.1`, … here instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the effective configuration (`show`) or check it without starting anything (`check`).
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Run the QFPay simulator (same as `qfpay-sim`).
    Sim(qfpay_sim::args::SimArgs),
    /// Talk to QFPay directly, bypassing the ledger: for checking credentials and connectivity
    /// against a sandbox or the simulator. Production refunds go through `enqueue`.
    #[command(subcommand)]
    Qfpay(cmd::qfpay::QfpayCommand),
}

/// The command line as parsed and documented: each command's help ends with the variables it reads.
fn command() -> clap::Command {
    groups::grouped(settings::help::with_environment(Cli::command()))
}

/// Logs to stderr: `QFREFUND_LOG_FORMAT` `pretty` (the default; coloured only on a terminal) or
/// `json`; any other value is refused rather than quietly ignored. Traces over OTLP when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see `qfrefund_telemetry::traces`).
fn init_logging(component: &str, default: &str) -> anyhow::Result<qfrefund_telemetry::traces::Guard> {
    use qfrefund_telemetry::traces::LogFormat;
    use std::io::IsTerminal;
    let format = match std::env::var("QFREFUND_LOG_FORMAT").ok().as_deref() {
        Some("json") => LogFormat::Json,
        None | Some("") | Some("pretty") => LogFormat::Pretty,
        Some(other) => anyhow::bail!("QFREFUND_LOG_FORMAT: unknown format {other:?}: pretty (the default) or json"),
    };
    qfrefund_telemetry::traces::init(component, default, format, std::io::stderr().is_terminal())
        .map_err(anyhow::Error::msg)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let long_running = matches!(cli.command, Command::Worker | Command::Sim(_) | Command::Serve);
    let component = match cli.command {
        Command::Worker => "worker",
        Command::Serve => "api",
        Command::Sim(_) => "sim",
        _ => "cli",
    };
    let _traces = match init_logging(component, if long_running { "info" } else { "warn" }) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    output::set(cli.output);
    let config = cli.config.as_deref();
    let result = match cli.command {
        Command::Worker => cmd::worker::worker(config).await,
        Command::Enqueue(args) => cmd::enqueue::enqueue(config, args).await,
        Command::Import(args) => cmd::import::import(config, args).await,
        Command::Status { out_trade_no, merchant, attempts } => {
            cmd::status::status(config, &merchant, &out_trade_no, attempts).await
        }
        Command::List(args) => cmd::list::list(config, args).await,
        Command::Pause { merchant, reason, by } => cmd::pause::pause(config, &merchant, true, &reason, by).await,
        Command::Resume { merchant, reason, by } => cmd::pause::pause(config, &merchant, false, &reason, by).await,
        Command::Retry(op) => cmd::operate::operate(config, op, ledger::Operation::Retry).await,
        Command::Resolve { op, state, force } => {
            let target = if state == "succeeded" { ledger::State::Succeeded } else { ledger::State::Failed };
            let op_kind =
                if force { ledger::Operation::ForceResolve(target) } else { ledger::Operation::Resolve(target) };
            cmd::operate::operate(config, op, op_kind).await
        }
        Command::Cancel(op) => cmd::operate::operate(config, op, ledger::Operation::Cancel).await,
        Command::Enquire(op) => cmd::operate::operate(config, op, ledger::Operation::EnquireNow).await,
        Command::Serve => cmd::serve::serve(config).await,
        Command::Events(args) => cmd::events::events(config, args).await,
        Command::Audit { from } => cmd::audit::audit(config, from).await,
        Command::Stats => cmd::stats::stats(config).await,
        Command::Workers => cmd::workers::workers(config).await,
        Command::Prune { dry_run } => cmd::prune::prune(config, dry_run).await,
        Command::EnableRetention { compact, summaries, compact_queue, no_compact_queue } => {
            let queue = if compact_queue {
                Some(true)
            } else if no_compact_queue {
                Some(false)
            } else {
                None
            };
            cmd::enable_retention::enable(config, compact, summaries, queue).await
        }
        Command::Redeliver { ids, all, reason, by } => cmd::redeliver::redeliver(config, ids, all, &reason, by).await,
        Command::ScopeMerchants => cmd::scope_merchants::scope_merchants(config).await,
        Command::Reconcile(args) => cmd::reconcile::reconcile(config, args).await,
        Command::Ping { http } => cmd::ping::ping(config, http.as_deref()).await,
        Command::Completions { shell } => cmd::docs::completions(shell),
        Command::Man { dir } => cmd::docs::man(dir.as_deref()),
        Command::Config(cmd) => cmd::config::run(config, cmd),
        Command::Sim(args) => qfpay_sim::args::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Qfpay(cmd) => cmd::qfpay::run(cmd, config).await.map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`qfrefund list | head`) had what it wanted.
        Err(e) if exit::broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(exit::code(&e))
        }
    }
}

/// The error and its causes, each said once: a cause whose words its wrapper already carries,
/// or that repeats the one before, is left out.
fn report(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        for part in cause.to_string().split(": ") {
            if !part.is_empty() && !parts.iter().any(|p| p == part) {
                parts.push(part.to_owned());
            }
        }
    }
    parts.join(": ")
}

/// What to try, for the errors a first run meets most.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let text = report(e);
    if !text.contains("connecting to Redis") {
        None
    } else if text.contains("Parse error") || text.contains("Incompatible type") {
        Some("that server does not speak Redis' protocol (RESP): check the host and port in QFREFUND_REDIS_URL")
    } else {
        Some("is redis-server running there? Point QFREFUND_REDIS_URL at it (redis://host:6379)")
    }
}
