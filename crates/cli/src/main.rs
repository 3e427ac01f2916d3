//! `qfrefund`: the command line. Parsing, configuration and output only; the logic lives in the
//! library crates.

mod qfpay_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qfrefund", version, about = "Durable QFPay refunds: at most one refund per out_trade_no")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the QFPay simulator (same as `qfpay-sim`).
    Sim(qfpay_sim::args::SimArgs),
    /// Talk to QFPay directly, bypassing the ledger: for checking credentials and connectivity
    /// against a sandbox or the simulator. Production refunds go through `enqueue`.
    #[command(subcommand)]
    Qfpay(qfpay_cmd::QfpayCommand),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Sim(args) => qfpay_sim::args::run(args).await,
        Command::Qfpay(cmd) => qfpay_cmd::run(cmd).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
