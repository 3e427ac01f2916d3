//! `qfrefund enqueue`: one refund, idempotent on (merchant, out_trade_no).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use ledger::{Enqueued, NewRefund};

use crate::config::Config;
use crate::connect::{open_enqueuer, write_failed};

#[derive(Args, Debug)]
pub struct EnqueueArgs {
    /// The original payment's QFPay syssn.
    #[arg(long)]
    syssn: String,
    /// Your id for this refund: enqueueing it again never refunds twice.
    #[arg(long)]
    out_trade_no: String,
    /// Refund amount in minor units (100 = 1.00).
    #[arg(long, allow_negative_numbers = true)]
    amount: String,
    /// What the payment was for, in minor units (otherwise learned by enquiry).
    #[arg(long, allow_negative_numbers = true)]
    orig_amount: Option<String>,
    #[arg(long)]
    mchid: Option<String>,
    #[arg(long)]
    udid: Option<String>,
    /// Which configured merchant's credentials to use.
    #[arg(long)]
    merchant: Option<String>,
}

pub async fn enqueue(config: Option<&Path>, a: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let txamt = qfpay::request::parse_txamt("amount", &a.amount)?;
    let orig = a.orig_amount.as_deref().map(|v| qfpay::request::parse_txamt("orig_amount", v)).transpose()?;
    let refund = NewRefund {
        syssn: a.syssn,
        out_trade_no: a.out_trade_no,
        txamt,
        orig_txamt: orig,
        mchid: a.mchid,
        udid: a.udid,
        merchant: a.merchant,
        // A trace this command runs in (`TRACEPARENT`, as tools that start one set it): the
        // workers' spans for the refund join it.
        traceparent: std::env::var("TRACEPARENT").ok().filter(|t| ledger::producer::valid_traceparent(t)),
    };
    refund.clone().normalised().validate()?;
    let ledger = open_enqueuer(config).await?;
    let known = Config::load(config)?.merchant_names();
    if let Err(unknown) = ledger.check_refund_merchant(&refund, &known).await? {
        return Err(crate::exit::invalid(anyhow::anyhow!("{unknown}")));
    }
    match ledger.enqueue(refund).await {
        Ok(e) => {
            crate::output::one(e.record())?;
            if matches!(e, Enqueued::Duplicate(_)) {
                eprintln!(
                    "note: {} was enqueued before with the same request; this is that record",
                    e.record().out_trade_no
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => write_failed(e),
    }
}
