//! `qfpay-sim`: runs the QFPay simulator until Ctrl-C / SIGTERM.

use clap::Parser;
use qfpay_sim::args::SimArgs;

#[derive(Parser)]
#[command(
    name = "qfpay-sim",
    version,
    about = "A QFPay /trade/v1 simulator with fault injection and an audit of every refund"
)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    qfpay_sim::args::run(Cli::parse().sim).await
}
