//! The simulated QFPay back end: merchants, payments, refunds, and the rules of API §9. Pure state
//! behind one mutex; the HTTP layer ([`crate::http`]) verifies signatures, draws faults and calls in.
//! Time is always passed in (sim milliseconds), so every rule is testable without waiting.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use qfpay::time::{DEFAULT_OFFSET_SECS, Txdtm, in_refund_blackout};
use qfpay::{ClientKey, Params};
use serde::{Deserialize, Serialize};

/// A merchant account: app code, client key and, for agents' sub-merchants, a `mchid`.
#[derive(Debug, Clone)]
pub struct Merchant {
    pub app_code: String,
    pub key: ClientKey,
    pub mchid: Option<String>,
}

/// A payment the simulator knows, as seeded from a file, the admin endpoint or `--generate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSeed {
    pub syssn: String,
    pub txamt: u64,
    /// Owner; defaults to the first merchant.
    #[serde(default)]
    pub app_code: Option<String>,
    /// `0000` for a successful payment (the default); anything else is not refundable.
    #[serde(default = "ok_code")]
    pub respcd: String,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default = "hkd")]
    pub txcurrcd: String,
    #[serde(default = "wechat")]
    pub pay_type: String,
}

fn ok_code() -> String {
    "0000".into()
}
fn hkd() -> String {
    "HKD".into()
}
fn wechat() -> String {
    "800212".into()
}

#[derive(Debug, Clone)]
pub(crate) struct Payment {
    pub(crate) seed: PaymentSeed,
    pub(crate) app_code: String,
    pub(crate) txdtm: Txdtm,
    /// Sum of succeeded refunds.
    refunded: u64,
    /// Sum of refunds still processing (they count against the remainder).
    reserved: u64,
    processing: u32,
}

/// Where a recorded refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    Processing,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
pub(crate) struct Refund {
    pub(crate) app_code: String,
    pub(crate) syssn: String,
    pub(crate) orig_syssn: String,
    pub(crate) out_trade_no: String,
    pub(crate) txamt: u64,
    pub(crate) txdtm: String,
    udid: Option<String>,
    pub(crate) sysdtm: Txdtm,
    pub(crate) sys_ms: i64,
    pub(crate) state: RefundState,
    pub(crate) respcd: String,
    /// For processing refunds: the code it will end with.
    ends_with: String,
}

/// The business answer to a refund (the HTTP layer adds faults around it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub respcd: String,
    pub resperr: String,
    /// Set when the refund was recorded (applied or accepted as processing).
    pub refund: Option<serde_json::Value>,
}

impl Answer {
    fn reject(respcd: &str, resperr: impl Into<String>) -> Self {
        Self { respcd: respcd.into(), resperr: resperr.into(), refund: None }
    }

    /// The JSON body QFPay would send.
    pub fn body(&self) -> serde_json::Value {
        match &self.refund {
            Some(r) => r.clone(),
            None => serde_json::json!({
                "respcd": self.respcd, "resperr": self.resperr, "respmsg": "",
                "syssn": null, "txamt": null,
            }),
        }
    }
}

/// How a refund should be applied, decided by the fault draw before calling [`Bank::refund`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    Now,
    /// Every rule passed, but today's unsettled takings cannot fund it: `1269`, nothing recorded.
    Insufficient,
    /// Accept as processing (`1145`); at `until_ms` it ends with `final_code` (`0000` = success).
    Processing {
        until_ms: i64,
        final_code: String,
    },
}

/// Counters of everything that happened, for `GET /_sim/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub refund_requests: u64,
    pub query_requests: u64,
    pub answers: BTreeMap<String, u64>,
    pub faults: BTreeMap<&'static str, u64>,
}

/// All simulated QFPay state.
#[derive(Debug, Default)]
pub struct Bank {
    merchants: HashMap<String, Merchant>,
    first_merchant: Option<String>,
    pub(crate) payments: HashMap<String, Payment>,
    pub(crate) refunds: HashMap<(String, String), Refund>,
    /// Indexes for enquiries (their cost must not grow with what the simulator holds): a payment's
    /// syssn by (app code, its out_trade_no); a refund's key by its own syssn; a refund's place in
    /// `order`.
    pub(crate) payment_by_otn: HashMap<(String, String), String>,
    pub(crate) refund_by_syssn: HashMap<String, (String, String)>,
    pub(crate) order_pos: HashMap<(String, String), usize>,
    /// `out_trade_no`s taken per app code, payments' and refunds' alike (API §2).
    taken: HashSet<(String, String)>,
    pub(crate) order: Vec<(String, String)>,
    due: BinaryHeap<Reverse<(i64, String, String)>>,
    next_syssn: u64,
    /// Refuse refunds in 23:30–00:30 (UTC+8) with `1265`.
    pub quiet_window: bool,
    pub stats: Stats,
}

impl Bank {
    pub fn new(merchants: Vec<Merchant>, quiet_window: bool) -> Self {
        let first_merchant = merchants.first().map(|m| m.app_code.clone());
        Self {
            merchants: merchants.into_iter().map(|m| (m.app_code.clone(), m)).collect(),
            first_merchant,
            quiet_window,
            next_syssn: 1,
            ..Self::default()
        }
    }

    pub fn merchant(&self, app_code: &str) -> Option<&Merchant> {
        self.merchants.get(app_code)
    }

    /// Adds payments; an existing `syssn` is an error (payments are immutable facts).
    pub fn add_payments(&mut self, seeds: Vec<PaymentSeed>, now_ms: i64) -> Result<usize, String> {
        let n = seeds.len();
        for seed in seeds {
            qfpay::request::validate_syssn(&seed.syssn).map_err(|e| e.to_string())?;
            let app_code = match seed.app_code.clone().or_else(|| self.first_merchant.clone()) {
                Some(a) if self.merchants.contains_key(&a) => a,
                Some(a) => return Err(format!("payment {}: unknown app_code {a:?}", seed.syssn)),
                None => return Err("no merchant configured".into()),
            };
            if self.payments.contains_key(&seed.syssn) {
                return Err(format!("payment {} exists already", seed.syssn));
            }
            if let Some(otn) = &seed.out_trade_no {
                self.taken.insert((app_code.clone(), otn.clone()));
                self.payment_by_otn.insert((app_code.clone(), otn.clone()), seed.syssn.clone());
            }
            let txdtm = Txdtm::from_unix(now_ms.div_euclid(1000), DEFAULT_OFFSET_SECS);
            self.payments
                .insert(seed.syssn.clone(), Payment { seed, app_code, txdtm, refunded: 0, reserved: 0, processing: 0 });
        }
        Ok(n)
    }

    /// Applies the rules of API §9 to a refund whose signature and parameters were checked.
    pub fn refund(&mut self, app_code: &str, p: &Params, apply: Apply, now_ms: i64) -> Answer {
        self.settle(now_ms);
        let (Some(syssn), Some(otn), Some(txdtm)) = (p.get("syssn"), p.get("out_trade_no"), p.get("txdtm")) else {
            return Answer::reject("1104", "missing syssn, out_trade_no or txdtm");
        };
        let Some(txamt) = p.get("txamt").and_then(|t| qfpay::request::parse_txamt("txamt", t).ok()) else {
            return Answer::reject("1104", "txamt must be a positive integer of minor units");
        };
        let sysdtm = Txdtm::from_unix(now_ms.div_euclid(1000), DEFAULT_OFFSET_SECS);
        if self.quiet_window && in_refund_blackout(sysdtm) {
            return Answer::reject(
                "1265",
                "Refunds are not accepted between 23:30 and 00:30, please retry later(1265)",
            );
        }
        let key = (app_code.to_owned(), otn.to_owned());
        if self.taken.contains(&key) {
            return Answer::reject("1102", "Duplicate request: out_trade_no has been used(1102)");
        }
        let Some(payment) = self.payments.get_mut(syssn).filter(|pay| pay.app_code == app_code) else {
            return Answer::reject("1136", "Transaction does not exist or is not operable(1136)");
        };
        if payment.seed.respcd != "0000" {
            return Answer::reject("1261", "Order not paid, cannot be refunded(1261)");
        }
        if payment.processing > 0 {
            return Answer::reject("1143", "You still have processing requests, please do not repeat the initiation");
        }
        let remaining = payment.seed.txamt.saturating_sub(payment.refunded + payment.reserved);
        if txamt > remaining {
            return Answer::reject("1272", format!("Refund amount exceeds the refundable remainder {remaining}(1272)"));
        }
        let (state, respcd, ends_with) = match apply {
            Apply::Insufficient => {
                return Answer::reject(
                    "1269",
                    "Today this payment method refundable balance is not enough for this refund(1269)",
                );
            }
            Apply::Now => {
                payment.refunded += txamt;
                (RefundState::Succeeded, "0000", "0000".to_owned())
            }
            Apply::Processing { until_ms, final_code } => {
                payment.reserved += txamt;
                payment.processing += 1;
                self.due.push(Reverse((until_ms, key.0.clone(), key.1.clone())));
                (RefundState::Processing, "1145", final_code)
            }
        };
        let pay_currency = payment.seed.txcurrcd.clone();
        let refund_syssn = format!("9{:025}", self.next_syssn);
        self.next_syssn += 1;
        let refund = Refund {
            app_code: app_code.to_owned(),
            syssn: refund_syssn,
            orig_syssn: syssn.to_owned(),
            out_trade_no: otn.to_owned(),
            txamt,
            txdtm: txdtm.to_owned(),
            udid: p.get("udid").map(str::to_owned),
            sysdtm,
            sys_ms: now_ms,
            state,
            respcd: respcd.to_owned(),
            ends_with,
        };
        let body = serde_json::json!({
            "respcd": respcd,
            "resperr": if respcd == "0000" { "success" } else { "Processing, please wait(1145)" },
            "respmsg": "",
            "syssn": refund.syssn,
            "orig_syssn": refund.orig_syssn,
            "out_trade_no": refund.out_trade_no,
            "txamt": refund.txamt.to_string(),
            "txcurrcd": pay_currency,
            "txdtm": refund.txdtm,
            "sysdtm": refund.sysdtm.to_string(),
            "udid": refund.udid,
        });
        self.taken.insert(key.clone());
        self.order_pos.insert(key.clone(), self.order.len());
        self.refund_by_syssn.insert(refund.syssn.clone(), key.clone());
        self.order.push(key.clone());
        self.refunds.insert(key, refund);
        Answer { respcd: respcd.to_owned(), resperr: String::new(), refund: Some(body) }
    }

    /// Turns processing refunds whose time has come final.
    pub fn settle(&mut self, now_ms: i64) {
        while let Some(Reverse((until, _, _))) = self.due.peek() {
            if *until > now_ms {
                break;
            }
            let Some(Reverse((_, app, otn))) = self.due.pop() else { break };
            let Some(r) = self.refunds.get_mut(&(app, otn)) else { continue };
            let Some(pay) = self.payments.get_mut(&r.orig_syssn) else { continue };
            pay.reserved -= r.txamt;
            pay.processing -= 1;
            if r.ends_with == "0000" {
                pay.refunded += r.txamt;
                r.state = RefundState::Succeeded;
            } else {
                r.state = RefundState::Failed;
            }
            r.respcd = r.ends_with.clone();
        }
    }

    pub(crate) fn payment_json(&self, pay: &Payment) -> serde_json::Value {
        let cancel = if pay.refunded == 0 {
            "0"
        } else if pay.refunded >= pay.seed.txamt {
            "3"
        } else {
            "5"
        };
        serde_json::json!({
            "syssn": pay.seed.syssn, "out_trade_no": pay.seed.out_trade_no, "origssn": null,
            "order_type": "payment", "pay_type": pay.seed.pay_type, "txamt": pay.seed.txamt.to_string(),
            "txcurrcd": pay.seed.txcurrcd, "respcd": pay.seed.respcd, "errmsg": "success",
            "cancel": cancel, "txdtm": pay.txdtm.to_string(), "sysdtm": pay.txdtm.to_string(),
        })
    }

    pub(crate) fn refund_json(&self, r: &Refund) -> serde_json::Value {
        let pay = self.payments.get(&r.orig_syssn);
        serde_json::json!({
            "syssn": r.syssn, "out_trade_no": r.out_trade_no, "origssn": r.orig_syssn,
            "order_type": "refund", "pay_type": pay.map(|p| p.seed.pay_type.as_str()),
            "txamt": r.txamt.to_string(), "txcurrcd": pay.map(|p| p.seed.txcurrcd.as_str()),
            "respcd": r.respcd, "errmsg": match r.state {
                RefundState::Succeeded => "success",
                RefundState::Processing => "processing",
                RefundState::Failed => "refund failed",
            },
            "cancel": "0", "txdtm": r.txdtm, "sysdtm": r.sysdtm.to_string(), "udid": r.udid,
        })
    }
}

pub(crate) fn reject_json(respcd: &str, resperr: &str) -> serde_json::Value {
    serde_json::json!({"respcd": respcd, "resperr": resperr, "respmsg": "", "data": []})
}

/// First and last second of `t`'s month.
pub(crate) fn month_bounds(t: Txdtm) -> (Txdtm, Txdtm) {
    let s = t.to_string();
    let (y, m) = (&s[0..4], &s[5..7]);
    let start: Txdtm = format!("{y}-{m}-01 00:00:00").parse().unwrap_or(t);
    let mut end = start;
    for d in (28..=31).rev() {
        if let Ok(e) = format!("{y}-{m}-{d:02} 23:59:59").parse::<Txdtm>() {
            end = e;
            break;
        }
    }
    (start, end)
}
