//! `qfrefund status`: one refund as it is now, from Redis or the archive.

use std::path::Path;
use std::process::ExitCode;

use crate::connect::open_reader;

pub async fn status(
    config: Option<&Path>,
    merchant: &str,
    out_trade_no: &str,
    attempts: bool,
) -> anyhow::Result<ExitCode> {
    let ledger = open_reader(config).await?;
    match ledger.get(merchant, out_trade_no).await? {
        Some(r) => {
            let mut shown = serde_json::to_value(&r)?;
            if attempts {
                shown["attempts"] = serde_json::to_value(ledger.attempts(merchant, out_trade_no).await?)?;
            }
            crate::output::one(&shown)?;
            Ok(ExitCode::SUCCESS)
        }
        None => match crate::archived::find(config, &ledger, merchant, out_trade_no).await? {
            Some(archived) => {
                crate::output::one(&archived)?;
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no refund with out_trade_no {out_trade_no:?} for merchant {merchant:?}");
                Ok(ExitCode::from(crate::exit::NOT_FOUND))
            }
        },
    }
}
