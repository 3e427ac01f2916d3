//! `qfrefund qfpay refund|query`: one signed call, its answer printed as JSON.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use qfpay::time::DEFAULT_OFFSET_SECS;
use qfpay::{Client, ClientConfig, ClientKey, Credentials, EnquiryRequest, RefundRequest, SignAlg, Txdtm};

/// Where and who: the same environment variables the worker reads. The client key is read from
/// `QFPAY_CLIENT_KEY` only, never from a flag, so it does not show in `ps` or shell history.
#[derive(Args, Debug)]
pub struct Endpoint {
    /// QFPay base URL, e.g. https://test-openapi-hk.qfapi.com or the simulator's address.
    #[arg(long, env = "QFPAY_BASE_URL")]
    base_url: String,
    #[arg(long, env = "QFPAY_APP_CODE")]
    app_code: String,
    /// MD5 (QFPay's default) or SHA256.
    #[arg(long, env = "QFPAY_SIGN_ALG", default_value = "MD5")]
    sign_alg: SignAlg,
    #[arg(long, env = "QFREFUND_HTTP_TIMEOUT_MS", default_value_t = 15_000)]
    http_timeout_ms: u64,
}

#[derive(Subcommand, Debug)]
pub enum QfpayCommand {
    /// POST /trade/v1/refund once (no ledger, no retry, no enquiry).
    Refund {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        syssn: String,
        #[arg(long)]
        out_trade_no: String,
        /// Minor units (100 = 1.00).
        #[arg(long)]
        amount: String,
        #[arg(long, env = "QFPAY_MCHID")]
        mchid: Option<String>,
        #[arg(long)]
        udid: Option<String>,
    },
    /// POST /trade/v1/query by syssn and/or out_trade_no, over the last --days days.
    Query {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        syssn: Vec<String>,
        #[arg(long)]
        out_trade_no: Vec<String>,
        #[arg(long, default_value_t = 31)]
        days: i64,
        #[arg(long, env = "QFPAY_MCHID")]
        mchid: Option<String>,
    },
}

fn client(e: &Endpoint) -> anyhow::Result<Client> {
    let key = std::env::var("QFPAY_CLIENT_KEY").context("QFPAY_CLIENT_KEY is not set")?;
    let config = ClientConfig { timeout: Duration::from_millis(e.http_timeout_ms), ..ClientConfig::default() };
    let creds = Credentials { app_code: e.app_code.clone(), key: ClientKey::new(key), alg: e.sign_alg };
    Ok(Client::new(Client::pool(&config)?, &e.base_url, creds)?)
}

pub async fn run(cmd: QfpayCommand) -> anyhow::Result<()> {
    let answer = match cmd {
        QfpayCommand::Refund { endpoint, syssn, out_trade_no, amount, mchid, udid } => {
            let txamt = qfpay::request::parse_txamt("amount", &amount)?;
            let req = RefundRequest::new(&syssn, &out_trade_no, txamt, Txdtm::now(DEFAULT_OFFSET_SECS))?
                .with_mchid(mchid.as_deref())?
                .with_udid(udid.as_deref())?;
            serde_json::to_value(client(&endpoint)?.refund(&req).await?)?
        }
        QfpayCommand::Query { endpoint, syssn, out_trade_no, days, mchid } => {
            let now = Txdtm::now(DEFAULT_OFFSET_SECS);
            let from = Txdtm::from_unix(now.to_unix(DEFAULT_OFFSET_SECS) - days.max(0) * 86_400, DEFAULT_OFFSET_SECS);
            let syssn: Vec<&str> = syssn.iter().map(String::as_str).collect();
            let otn: Vec<&str> = out_trade_no.iter().map(String::as_str).collect();
            let req = EnquiryRequest::new(&syssn, &otn, Some((from, now)))?.with_mchid(mchid.as_deref())?;
            serde_json::to_value(client(&endpoint)?.enquire(&req).await?)?
        }
    };
    println!("{answer}");
    Ok(())
}
