//! Command-line options of the simulator, shared by `qfpay-sim` and `qfrefund sim`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use qfpay::ClientKey;
use serde::Deserialize;

use crate::bank::{Merchant, PaymentSeed};
use crate::faults::{Faults, Rng};
use crate::http::SimConfig;

/// Demo credentials, used when none are given. They are not secret: the simulator is a test tool.
pub const DEMO_APP_CODE: &str = "QFSIMAPPCODE";
pub const DEMO_CLIENT_KEY: &str = "QFSIM0DEMO0KEY0NOT0A0SECRET00000";

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8480")]
    pub listen: String,
    /// App code of the (single) merchant.
    #[arg(long, env = "QFPAY_APP_CODE", default_value = DEMO_APP_CODE)]
    pub app_code: String,
    /// Client key of that merchant (prefer the environment variable to a flag).
    #[arg(long, env = "QFPAY_CLIENT_KEY", default_value = DEMO_CLIENT_KEY, hide_env_values = true, hide_default_value = true)]
    pub client_key: String,
    /// The merchant's mchid, for an agent account (then every request must carry it).
    #[arg(long, env = "QFPAY_MCHID")]
    pub mchid: Option<String>,
    /// JSON file of merchants `[{"app_code","client_key","mchid"}]`, instead of the flags above.
    #[arg(long)]
    pub merchants: Option<PathBuf>,
    /// Payments to seed: a JSON array of `{"syssn","txamt",…}` or a CSV with header `syssn,txamt[,app_code,respcd,out_trade_no,txcurrcd,pay_type]`.
    #[arg(long)]
    pub payments: Option<PathBuf>,
    /// Generate N successful payments with syssn `1000…0001`, `1000…0002`, … (26 digits).
    #[arg(long, default_value_t = 0)]
    pub generate: u64,
    /// Amount of each generated payment (minor units); 0 draws one between 1 000 and 100 000.
    #[arg(long, default_value_t = 100_000)]
    pub generate_amount: u64,
    /// Seed of the fault and amount generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `on` refuses refunds 23:30–00:30 UTC+8 with 1265, as QFPay does; `off` accepts them.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub quiet_window: String,
    /// Latency added to every answer (ms).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability of HTTP 500 before applying a refund or enquiry.
    #[arg(long, default_value_t = 0.0)]
    pub fault_5xx: f64,
    /// Probability of applying a refund, then closing the connection without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub fault_drop: f64,
    /// Probability of applying a refund, then holding the answer for --hang-ms.
    #[arg(long, default_value_t = 0.0)]
    pub fault_hang: f64,
    #[arg(long, default_value_t = 30_000)]
    pub hang_ms: u64,
    /// Probability of answering 1145 (processing); final after --processing-ms.
    #[arg(long, default_value_t = 0.0)]
    pub fault_processing: f64,
    #[arg(long, default_value_t = 2_000)]
    pub processing_ms: u64,
    /// Share of processing refunds that end failed, with --processing-fail-code.
    #[arg(long, default_value_t = 0.0)]
    pub fault_processing_fail: f64,
    #[arg(long, default_value = "1155")]
    pub processing_fail_code: String,
    /// Probability of HTTP 429.
    #[arg(long, default_value_t = 0.0)]
    pub fault_429: f64,
    /// Probability of 1269 (unsettled amount too small), nothing applied.
    #[arg(long, default_value_t = 0.0)]
    pub fault_1269: f64,
    /// Probability of HTTP 5xx on an enquiry.
    #[arg(long, default_value_t = 0.0)]
    pub fault_enquiry_5xx: f64,
    /// Enquiries show a refund only this many ms after it was recorded.
    #[arg(long, default_value_t = 0)]
    pub visibility_lag_ms: u64,
}

#[derive(Deserialize)]
struct MerchantFile {
    app_code: String,
    client_key: String,
    #[serde(default)]
    mchid: Option<String>,
}

impl SimArgs {
    /// Turns the options into a configuration, reading the files they name.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let merchants = match &self.merchants {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let list: Vec<MerchantFile> =
                    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
                if list.is_empty() {
                    bail!("{}: no merchants", path.display());
                }
                list.into_iter()
                    .map(|m| Merchant { app_code: m.app_code, key: ClientKey::new(m.client_key), mchid: m.mchid })
                    .collect()
            }
            None => vec![Merchant {
                app_code: self.app_code.clone(),
                key: ClientKey::new(self.client_key.clone()),
                mchid: self.mchid.clone().filter(|m| !m.is_empty()),
            }],
        };
        let mut payments = match &self.payments {
            Some(path) => load_payments(path)?,
            None => Vec::new(),
        };
        let mut rng = Rng::new(self.seed ^ 0x5EED);
        for i in 1..=self.generate {
            let txamt = if self.generate_amount == 0 { rng.range(1_000, 100_000) } else { self.generate_amount };
            payments.push(generated_payment(i, txamt));
        }
        let faults = Faults {
            latency_ms: self.latency_ms,
            error_5xx: self.fault_5xx,
            drop_after_apply: self.fault_drop,
            hang_after_apply: self.fault_hang,
            hang_ms: self.hang_ms,
            processing: self.fault_processing,
            processing_ms: self.processing_ms,
            processing_fail: self.fault_processing_fail,
            processing_fail_code: self.processing_fail_code.clone(),
            rate_limit_429: self.fault_429,
            code_1269: self.fault_1269,
            enquiry_5xx: self.fault_enquiry_5xx,
            visibility_lag_ms: self.visibility_lag_ms,
            paused: false,
        };
        faults.validate().map_err(anyhow::Error::msg)?;
        Ok(SimConfig { merchants, payments, faults, seed: self.seed, quiet_window: self.quiet_window == "on" })
    }
}

/// The `i`-th generated payment: syssn `1` followed by `i` in 25 digits.
pub fn generated_payment(i: u64, txamt: u64) -> PaymentSeed {
    PaymentSeed {
        syssn: generated_syssn(i),
        txamt,
        app_code: None,
        respcd: "0000".into(),
        out_trade_no: Some(format!("PAY{i}")),
        txcurrcd: "HKD".into(),
        pay_type: "800212".into(),
    }
}

/// The syssn of the `i`-th generated payment.
pub fn generated_syssn(i: u64) -> String {
    format!("1{i:025}")
}

/// Reads payments from a JSON array or a CSV file (chosen by content, not by name).
pub fn load_payments(path: &Path) -> anyhow::Result<Vec<PaymentSeed>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.trim_start_matches('\u{feff}');
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).with_context(|| format!("parsing {} as JSON", path.display()));
    }
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else { return Ok(Vec::new()) };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(syssn_i), Some(txamt_i)) = (idx("syssn"), idx("txamt")) else {
        bail!("{}: CSV header must name syssn and txamt (got {header:?})", path.display());
    };
    let mut out = Vec::new();
    for (n, line) in lines {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |i: Option<usize>| i.and_then(|i| f.get(i)).map(|s| s.to_string()).filter(|s| !s.is_empty());
        let ctx = || format!("{} line {}", path.display(), n + 1);
        let syssn = get(Some(syssn_i)).with_context(|| format!("{}: syssn missing", ctx()))?;
        let txamt = qfpay::request::parse_txamt("txamt", &get(Some(txamt_i)).unwrap_or_default()).with_context(ctx)?;
        out.push(PaymentSeed {
            syssn,
            txamt,
            app_code: get(idx("app_code")),
            respcd: get(idx("respcd")).unwrap_or_else(|| "0000".into()),
            out_trade_no: get(idx("out_trade_no")),
            txcurrcd: get(idx("txcurrcd")).unwrap_or_else(|| "HKD".into()),
            pay_type: get(idx("pay_type")).unwrap_or_else(|| "800212".into()),
        });
    }
    Ok(out)
}

/// Runs the simulator in the foreground until SIGINT or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let (payments, merchants) = (config.payments.len(), config.merchants.len());
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let sim = crate::http::SimHandle::start(config, listener)?;
    // One line, machine-readable enough for scripts waiting on it; never the key.
    println!(
        "qfpay-sim listening on {} ({merchants} merchant(s), {payments} payment(s), quiet window {})",
        sim.url(),
        args.quiet_window
    );
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
