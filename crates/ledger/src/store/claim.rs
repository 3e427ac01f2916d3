//! What a worker does to a refund: claim it (lease + fence), apply a decision (compare-and-set on
//! `(state, fence)`), defer it, record its payment's amount, take a rate-limit token.

use std::collections::HashMap;

use crate::error::LedgerError;
use crate::refund::record::Record;
use crate::refund::schedule::Policy;
use crate::refund::state::State;
use crate::store::Ledger;
use crate::store::args::script_args;
use crate::store::durable;
use crate::store::keys::Keys;
use crate::store::script::CLAIM;

/// What a claim gave the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Send it: the lease is ours under `fence`, `submitting` is persisted; `record` is the record
    /// as claimed (its `txdtm` is the one to send).
    /// `durable`: the claim reached what [`ClaimOptions::durable_local`] and the configured replicas
    /// ask for, on the connection that wrote it. Send nothing unless it did.
    Submit { fence: u64, record: Box<Record>, durable: bool },
    /// Enquire it under `fence`; `record` is the record as claimed.
    /// `recovered`: it was found in `submitting` after its holder's lease ran out (it may have been
    /// sent; it is enquired, never resent).
    Enquire { fence: u64, record: Box<Record>, durable: bool, recovered: bool },
    /// It waited (paused merchant, busy payment) past its maximum age: now `needs_review`.
    Blocked(String),
    /// The payment's amount is unknown: learn it, then claim again.
    NeedPaid,
    /// It would exceed what was paid: it is now `failed`, never sent.
    Failed(String),
    /// Not now: moved to `next_at` (paused merchant, payment busy).
    Deferred { why: String, next_at: i64, cause: Deferral },
    /// Nothing to do: someone holds it, it is not due, it is final, or it waits for a person.
    Skip(Skipped),
    /// The record's payment or merchant is not the one the caller named: nothing was written;
    /// read the record and claim again with its own.
    Mismatch,
}

/// Why a claim left a refund alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// No such record.
    Missing,
    /// Final: nothing more to do.
    Final(State),
    /// Waiting for a person.
    Review,
    /// Someone's lease runs until then (ms).
    Leased { until: i64 },
    /// Not due before then (ms).
    Early { next_at: i64 },
    /// The record could not be claimed (a corrupt record goes to `needs_review`; any other error
    /// puts it a minute later): the reason says which.
    Broken(String),
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::Missing => write!(f, "no such refund"),
            Skipped::Final(s) => write!(f, "final ({s})"),
            Skipped::Review => write!(f, "waiting for a person (needs_review)"),
            Skipped::Leased { until } => write!(f, "leased until {until}"),
            Skipped::Early { next_at } => write!(f, "not due before {next_at}"),
            Skipped::Broken(why) => write!(f, "could not be claimed: {why}"),
        }
    }
}

/// What a worker brings to a claim besides the refund.
#[derive(Debug, Clone, Copy)]
pub struct ClaimOptions<'a> {
    pub worker: &'a str,
    pub policy: &'a Policy,
    /// The `txdtm` a first submit records (and sends).
    pub txdtm: &'a str,
    /// Answer [`Claim::NeedPaid`] (after taking a token for that enquiry) when the payment's
    /// amount is unknown.
    pub want_paid: bool,
    /// No submit before this time (ms; 0: none): QFPay's nightly window.
    pub submit_not_before: i64,
    /// The merchant's token bucket (rate per second, burst); `None`: no limit. A token is taken
    /// only when the claim hands out a request to send.
    pub rate: Option<(f64, u32)>,
    /// Wait for the claim to reach the local AOF (`WAITAOF`) before it counts as durable.
    pub durable_local: bool,
    /// The merchants this worker holds credentials for, `\n`-separated: a refund of any other
    /// merchant is deferred (past its maximum age: `needs_review`). `""`: not checked.
    pub served: &'a str,
}

impl<'a> ClaimOptions<'a> {
    /// A claim by `worker` under `policy`, recording `txdtm` for a first submit, with nothing else
    /// asked for: the paid amount not learned first, no nightly window, no rate limit, not waiting
    /// for the local AOF, every merchant taken as served. Workers set each of these themselves.
    pub fn new(worker: &'a str, policy: &'a Policy, txdtm: &'a str) -> Self {
        ClaimOptions {
            worker,
            policy,
            txdtm,
            want_paid: false,
            submit_not_before: 0,
            rate: None,
            durable_local: false,
            served: "",
        }
    }
}

pub use crate::refund::machine::claim::Deferral;

/// The cause word a script answers with (see `claim_one.lua`), as the type it names.
fn deferral_from_script(word: &str) -> Option<Deferral> {
    Some(match word {
        "rate_limit" => Deferral::RateLimit,
        "paused" => Deferral::MerchantPaused,
        "quiet_window" => Deferral::QuietWindow,
        "payment_busy" => Deferral::PaymentBusy,
        "paid_unknown" => Deferral::PaidUnknown,
        "no_credentials" => Deferral::NoCredentials,
        _ => return None,
    })
}

/// Names a refund the way a claim needs it: its keys (the payment's, the merchant's token bucket)
/// are derived from these, so the claim can read the record itself in the same round trip.
/// Workers get it from the claim that fetched the refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRef {
    /// Its id in its merchant's shard (see `refund::placement::refund_id`).
    pub id: String,
    pub out_trade_no: String,
    pub syssn: String,
    pub merchant: String,
}

impl From<&Record> for RefundRef {
    fn from(r: &Record) -> Self {
        Self {
            id: r.id.clone(),
            out_trade_no: r.out_trade_no.clone(),
            syssn: r.syssn.clone(),
            merchant: r.merchant.clone(),
        }
    }
}

script_args! {
    /// What `claim` and `claim_due` take (`lua/claim_one.lua` reads them as `A.<field>`).
    pub struct ClaimArgs<'a> {
        /// `claim` only: the refund (its id), and the payment and merchant the caller expects it to have.
        id: &'a str,
        syssn: &'a str,
        merchant: &'a str,
        /// `claim_due` only: at most this many refunds.
        limit: usize,
        now: i64,
        worker: &'a str,
        lease: u64,
        /// The `txdtm` a first submit records (and sends).
        txdtm: &'a str,
        busy_wait: u64,
        paused_wait: u64,
        maxlen: u64,
        want_paid: bool,
        /// No submit before this time (ms; 0: none).
        not_before: i64,
        max_age: u64,
        /// Tokens per second (0: no limit) and burst of the merchant's bucket.
        rate: f64,
        burst: u32,
        /// The merchants this worker holds credentials for, `\n`-separated ('' = not checked).
        served: &'a str,
    }
}

impl<'a> ClaimArgs<'a> {
    pub(crate) fn new(ledger: &Ledger, o: &ClaimOptions<'a>) -> Self {
        let (rate, burst) = o.rate.unwrap_or((0.0, 0));
        ClaimArgs {
            id: "",
            syssn: "",
            merchant: "",
            limit: 0,
            now: ledger.now_ms(),
            worker: o.worker,
            lease: o.policy.lease.as_millis() as u64,
            txdtm: o.txdtm,
            busy_wait: o.policy.syssn_busy_wait.as_millis() as u64,
            paused_wait: o.policy.paused_wait.as_millis() as u64,
            maxlen: ledger.config.events_maxlen,
            want_paid: o.want_paid,
            not_before: o.submit_not_before,
            max_age: o.policy.max_age.as_millis() as u64,
            rate,
            burst,
            served: o.served,
        }
    }
}

/// Reads one claim's answer (`reply`: the kind, then what that kind carries; see claim_one.lua).
pub(crate) fn parse_claim(keys: &Keys, id: &str, reply: &[String], durable: bool) -> Result<Claim, LedgerError> {
    let at = |i: usize| reply.get(i).cloned().unwrap_or_default();
    let bad = || LedgerError::Script(format!("claim answered {:?}", reply.first()));
    let claimed = || -> Result<(u64, Box<Record>), LedgerError> {
        let fence = at(1).parse::<u64>().map_err(|_| bad())?;
        let fields: HashMap<String, String> =
            reply[2..].chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
        Ok((fence, Box::new(Record::from_hash(&keys.record(id), &fields)?)))
    };
    Ok(match at(0).as_str() {
        "submit" => claimed().map(|(fence, record)| Claim::Submit { fence, record, durable })?,
        "enquire" | "recover" => {
            claimed().map(|(fence, record)| Claim::Enquire { fence, record, durable, recovered: at(0) == "recover" })?
        }
        "need_paid" => Claim::NeedPaid,
        "failed" => Claim::Failed(at(1)),
        "blocked" => Claim::Blocked(at(1)),
        "deferred" => Claim::Deferred {
            why: at(1),
            next_at: at(2).parse().map_err(|_| bad())?,
            cause: deferral_from_script(&at(3)).ok_or_else(bad)?,
        },
        "mismatch" => Claim::Mismatch,
        "missing" => Claim::Skip(Skipped::Missing),
        "broken" => Claim::Skip(Skipped::Broken(at(1))),
        "final" => Claim::Skip(Skipped::Final(at(1).parse().map_err(|_| bad())?)),
        "review" => Claim::Skip(Skipped::Review),
        "leased" => Claim::Skip(Skipped::Leased { until: at(1).parse().map_err(|_| bad())? }),
        "early" => Claim::Skip(Skipped::Early { next_at: at(1).parse().map_err(|_| bad())? }),
        _ => return Err(bad()),
    })
}

impl Ledger {
    /// Claims one named refund for this worker (see `lua/claim_one.lua`): one round trip that reads
    /// the record, checks it is due, takes a rate-limit token when a request will be sent, and
    /// takes the lease. Workers fetch due refunds with [`Ledger::claim_due`]; this is for a claim
    /// again after learning a payment's amount.
    pub async fn claim(&self, target: &RefundRef, o: &ClaimOptions<'_>) -> Result<Claim, LedgerError> {
        let shard = self.shard_of(&target.merchant);
        let mut inv = self.on_record(&CLAIM, &target.merchant, &target.id, &target.syssn);
        inv.key(self.shard_keys(shard).rate(&target.merchant));
        let args =
            ClaimArgs { id: &target.id, syssn: &target.syssn, merchant: &target.merchant, ..ClaimArgs::new(self, o) };
        args.push(&mut inv);
        let (reply, durable): (Vec<String>, bool) = durable::invoke(
            &mut self.con.clone(),
            &inv,
            &self.durability(o.durable_local && self.fsyncs_on_demand()),
            &self.probe_key(shard),
        )
        .await?;
        parse_claim(self.shard_keys(shard), &target.id, &reply, durable)
    }
}
