//! `qfrefund retry`, `resolve`, `cancel` and `enquire`: an operator's action on one refund, audited.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::connect::{open_producer, write_failed};

#[derive(Args, Debug)]
pub struct OperatorArgs {
    out_trade_no: String,
    /// The refund's merchant (out_trade_no is unique per merchant).
    #[arg(long, env = "QFREFUND_MERCHANT", default_value = ledger::DEFAULT_MERCHANT)]
    merchant: String,
    /// Why (kept on the record and in the outcome stream).
    #[arg(long)]
    reason: String,
    /// Who (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

pub async fn operate(config: Option<&Path>, a: OperatorArgs, op: ledger::Operation) -> anyhow::Result<ExitCode> {
    if a.reason.trim().is_empty() {
        return Err(crate::exit::invalid(anyhow::anyhow!("--reason must say why")));
    }
    let who = a.by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
    let ledger = open_producer(config).await?;
    let done = match ledger.operate(&a.merchant, &a.out_trade_no, op, &who, &a.reason).await {
        Ok(done) => done,
        Err(e) => return write_failed(e),
    };
    match done {
        Ok(_) => {
            let rec = ledger.get(&a.merchant, &a.out_trade_no).await?.context("record vanished")?;
            crate::output::one(&rec)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("refused: {why}");
            Ok(ExitCode::from(match why {
                ledger::Refusal::NoSuchRefund(_) => crate::exit::NOT_FOUND,
                ledger::Refusal::Refused(_) => crate::exit::CONFLICT,
            }))
        }
    }
}
