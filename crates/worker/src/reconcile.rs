//! Reconciliation: for every refund created in a time window, the ledger's word against QFPay's
//! enquiry, one CSV row each — what finance asks for after a batch run.
//!
//! Enquiries take tokens from the same per-merchant buckets the workers use, so a reconciliation
//! running beside the workers never pushes a merchant past QFPay's limits.

use std::collections::HashMap;
use std::io::Write;

use ledger::{Ledger, LedgerError, Record, State};
use qfpay::{Client, EnquiryResponse, RefundLookup};

use crate::config::WorkerConfig;
use crate::requests::enquiry_for;

/// How the two sides compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Both say the same about the money.
    Agree,
    /// They differ: someone must look (the note says how).
    Disagree(String),
    /// The ledger has not settled it yet; the note says what QFPay sees now.
    Open(String),
    /// QFPay could not be asked.
    Unknown(String),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::Disagree(_) => "disagree",
            Verdict::Open(_) => "open",
            Verdict::Unknown(_) => "unknown",
        }
    }

    pub fn note(&self) -> &str {
        match self {
            Verdict::Agree => "",
            Verdict::Disagree(n) | Verdict::Open(n) | Verdict::Unknown(n) => n,
        }
    }
}

/// What QFPay said, reduced to what the comparison needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QfpayView {
    /// `0000`, a processing code, another code, or empty when there is no such refund.
    pub respcd: String,
    pub syssn: String,
    pub txamt: String,
    pub summary: &'static str,
}

impl QfpayView {
    pub fn of(rec: &Record, answer: &EnquiryResponse) -> Self {
        let (summary, found) = match answer.refund(&rec.out_trade_no, &rec.syssn, rec.txamt) {
            RefundLookup::Succeeded(r) => ("succeeded", Some(r)),
            RefundLookup::InProgress(r) => ("processing", Some(r)),
            RefundLookup::Other(r) => ("refused", Some(r)),
            RefundLookup::Foreign(r) => ("foreign", Some(r)),
            RefundLookup::NotFound => ("none", None),
        };
        match found {
            Some(r) => QfpayView {
                respcd: r.respcd().to_owned(),
                syssn: r.syssn.clone().unwrap_or_default(),
                txamt: r.txamt.clone().unwrap_or_default(),
                summary,
            },
            None => QfpayView { respcd: String::new(), syssn: String::new(), txamt: String::new(), summary },
        }
    }
}

/// The comparison itself (pure).
pub fn verdict(rec: &Record, qf: &Result<QfpayView, String>) -> Verdict {
    let qf = match qf {
        Ok(v) => v,
        Err(e) => return Verdict::Unknown(format!("QFPay could not be asked: {e}")),
    };
    match rec.state {
        State::Succeeded => match qf.summary {
            "succeeded" => match rec.refund_syssn.as_deref() {
                Some(ours) if !qf.syssn.is_empty() && ours != qf.syssn => {
                    Verdict::Disagree(format!("QFPay's refund is {} but the ledger recorded {ours}", qf.syssn))
                }
                _ => Verdict::Agree,
            },
            "none" => Verdict::Disagree("the ledger says succeeded; QFPay has no such refund".into()),
            "processing" => Verdict::Disagree("the ledger says succeeded; QFPay still shows it processing".into()),
            "foreign" => {
                Verdict::Disagree("QFPay's refund under this out_trade_no reverses another payment or amount".into())
            }
            _ => Verdict::Disagree(format!("the ledger says succeeded; QFPay says respcd {}", qf.respcd)),
        },
        State::Failed | State::Cancelled => match qf.summary {
            "succeeded" => Verdict::Disagree(format!(
                "QFPay refunded {} (refund {}) but the ledger says {}: money moved",
                qf.txamt, qf.syssn, rec.state
            )),
            "processing" => {
                Verdict::Disagree(format!("the ledger says {}; QFPay still shows it processing", rec.state))
            }
            // No refund, a refusal, or someone else's: no money of this refund moved.
            _ => Verdict::Agree,
        },
        open => Verdict::Open(format!("ledger {open}; QFPay: {}", qf.summary)),
    }
}

/// One row of the report.
pub struct Row {
    pub record: Record,
    pub qfpay: Result<QfpayView, String>,
    pub verdict: Verdict,
}

/// Totals by verdict.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub refunds: u64,
    pub agree: u64,
    pub disagree: u64,
    pub open: u64,
    pub unknown: u64,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

pub const CSV_HEADER: &str = "out_trade_no,syssn,merchant,txamt,created_at,ledger_state,ledger_respcd,ledger_refund_syssn,qfpay,qfpay_respcd,qfpay_refund_syssn,qfpay_txamt,verdict,note";

pub fn csv_row(r: &Row) -> String {
    let rec = &r.record;
    let (summary, respcd, syssn, txamt) = match &r.qfpay {
        Ok(v) => (v.summary, v.respcd.as_str(), v.syssn.as_str(), v.txamt.as_str()),
        Err(_) => ("error", "", "", ""),
    };
    [
        rec.out_trade_no.as_str(),
        &rec.syssn,
        &rec.merchant,
        &rec.txamt.to_string(),
        &rec.created_at.to_string(),
        rec.state.as_str(),
        rec.respcd.as_deref().unwrap_or(""),
        rec.refund_syssn.as_deref().unwrap_or(""),
        summary,
        respcd,
        syssn,
        txamt,
        r.verdict.label(),
        r.verdict.note(),
    ]
    .iter()
    .map(|f| csv_field(f))
    .collect::<Vec<_>>()
    .join(",")
}

/// Reconciles refunds created in `[from_ms, to_ms]`, writing the CSV to `out`.
pub async fn run(
    ledger: &Ledger,
    config: &WorkerConfig,
    from_ms: i64,
    to_ms: i64,
    out: &mut dyn Write,
) -> Result<Summary, LedgerError> {
    let pool = Client::pool(&config.http).map_err(|e| LedgerError::Script(e.to_string()))?;
    let mut clients: HashMap<String, (Client, Option<String>)> = HashMap::new();
    for m in config.merchants.values() {
        let creds = qfpay::Credentials { app_code: m.app_code.clone(), key: m.key.clone(), alg: m.alg };
        let c = Client::new(pool.clone(), &m.base_url, creds).map_err(|e| LedgerError::Script(e.to_string()))?;
        clients.insert(m.name.clone(), (c, m.mchid.clone()));
    }
    let _ = writeln!(out, "{CSV_HEADER}");
    let mut summary = Summary::default();
    let mut offset = 0;
    loop {
        let records = ledger.created_between(from_ms, to_ms, offset, 200).await?;
        if records.is_empty() {
            break;
        }
        offset += records.len();
        for rec in records {
            let qfpay = match clients.get(&rec.merchant) {
                None => Err(format!("no credentials for merchant {:?}", rec.merchant)),
                Some((client, mchid)) => {
                    loop {
                        let wait = ledger.take_token(&rec.merchant, config.rate_per_sec, config.rate_burst).await?;
                        if wait == 0 {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                    }
                    match enquiry_for(&rec, mchid.as_deref(), ledger.now_ms()) {
                        Err(e) => Err(e),
                        Ok(req) => match client.enquire(&req).await {
                            Ok(a) if a.is_ok() => Ok(QfpayView::of(&rec, &a)),
                            Ok(a) => Err(format!("enquiry refused: respcd {}", a.respcd())),
                            Err(e) => Err(e.to_string()),
                        },
                    }
                }
            };
            let verdict = verdict(&rec, &qfpay);
            summary.refunds += 1;
            match verdict {
                Verdict::Agree => summary.agree += 1,
                Verdict::Disagree(_) => summary.disagree += 1,
                Verdict::Open(_) => summary.open += 1,
                Verdict::Unknown(_) => summary.unknown += 1,
            }
            let _ = writeln!(out, "{}", csv_row(&Row { record: rec, qfpay, verdict }));
        }
    }
    let _ = out.flush();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: State, refund_syssn: Option<&str>) -> Record {
        let mut r = Record::queued(&ledger::NewRefund::new("P1", "RF1", 100), 0);
        r.state = state;
        r.refund_syssn = refund_syssn.map(Into::into);
        r
    }

    fn view(summary: &'static str, syssn: &str) -> Result<QfpayView, String> {
        let respcd = if summary == "succeeded" { "0000" } else { "" };
        Ok(QfpayView { respcd: respcd.into(), syssn: syssn.into(), txamt: "100".into(), summary })
    }

    #[test]
    fn money_moved_against_a_final_failure_is_a_disagreement() {
        assert!(
            matches!(verdict(&rec(State::Failed, None), &view("succeeded", "R9")), Verdict::Disagree(n) if n.contains("money moved"))
        );
        assert!(matches!(verdict(&rec(State::Cancelled, None), &view("succeeded", "R9")), Verdict::Disagree(_)));
        assert_eq!(verdict(&rec(State::Failed, None), &view("none", "")), Verdict::Agree);
        assert_eq!(verdict(&rec(State::Failed, None), &view("refused", "R9")), Verdict::Agree);
    }

    #[test]
    fn a_success_must_be_found_and_be_the_same_refund() {
        assert_eq!(verdict(&rec(State::Succeeded, Some("R1")), &view("succeeded", "R1")), Verdict::Agree);
        assert!(matches!(verdict(&rec(State::Succeeded, Some("R1")), &view("succeeded", "R2")), Verdict::Disagree(_)));
        assert!(matches!(verdict(&rec(State::Succeeded, Some("R1")), &view("none", "")), Verdict::Disagree(_)));
        assert!(matches!(verdict(&rec(State::Succeeded, Some("R1")), &view("foreign", "R7")), Verdict::Disagree(_)));
    }

    #[test]
    fn open_refunds_and_unreachable_qfpay_are_neither_agreement_nor_alarm() {
        assert!(
            matches!(verdict(&rec(State::Pending, None), &view("succeeded", "R1")), Verdict::Open(n) if n.contains("succeeded"))
        );
        assert!(matches!(verdict(&rec(State::Succeeded, None), &Err("timeout".into())), Verdict::Unknown(_)));
    }

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(CSV_HEADER.split(',').count(), 14);
    }
}
