//! Enqueue QFPay refunds into a qfrefund ledger from Rust.
//!
//! A producer writes refund requests into the same Redis ledger the `qfrefund worker` fleet
//! drains; the workers sign them, send them to QFPay and settle every uncertain outcome by
//! enquiry. Enqueueing is **idempotent on `(merchant, out_trade_no)`**: the same request again
//! answers with the refund as it is ([`Enqueued::Duplicate`]), a different request under the same
//! id is refused ([`Error::Conflict`]), never a second refund.
//!
//! ```no_run
//! use qfrefund_producer::{Enqueued, NewRefund, Producer};
//!
//! # async fn run() -> Result<(), qfrefund_producer::Error> {
//! // QFREFUND_REDIS_URL, QFREFUND_NAMESPACE, QFREFUND_SHARDS, … as the workers read them.
//! let producer = Producer::from_env().await?;
//! let mut refund = NewRefund::new("10000000000000000000000003", "RF-1003", 1500);
//! refund.orig_txamt = Some(10000);
//! match producer.enqueue(refund).await {
//!     Ok(Enqueued::Created(r)) => println!("queued {}", r.out_trade_no),
//!     Ok(Enqueued::Duplicate(r)) => println!("already known: {}", r.state),
//!     // Unavailable or outcome unknown: retry the same request, with the same out_trade_no.
//!     Err(e) if e.is_retryable() => eprintln!("retry later: {e}"),
//!     Err(e) => eprintln!("this request must change: {e}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! **The rule for producers:** an error never means "not created" unless it says so. When
//! [`Error::is_retryable`] is true, retry the *same* request with the *same* `out_trade_no`;
//! never retry under a new one — that is how a refund is sent twice.
//!
//! This crate compiles no HTTP client: it speaks only to Redis.

#![warn(missing_docs)]

mod config;
mod error;

// The README's example is compiled as a doctest too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use config::{ProducerConfig, ProducerConfigBuilder};
pub use error::Error;
pub use ledger::state::State;
pub use ledger::{Accepted, Enqueued, Event, NewRefund, Record};

use ledger::Ledger;

/// A connection to a qfrefund ledger for enqueueing refunds and following them. Cheap to clone;
/// reconnects by itself when Redis goes away.
#[derive(Clone, Debug)]
pub struct Producer {
    ledger: Ledger,
    merchants: Vec<String>,
}

impl Producer {
    /// Connects with the settings the workers read from the environment (and from the file
    /// `QFREFUND_CONFIG` names, if any): see [`ProducerConfig::from_env`].
    pub async fn from_env() -> Result<Self, Error> {
        Self::connect(ProducerConfig::from_env()?).await
    }

    /// Connects with `config`, refusing a Redis that could lose refunds (an evicting
    /// `maxmemory-policy`; no append-only file unless `require_aof` is off), a ledger laid out
    /// otherwise than `config` says (shards, merchant placement), and a ledger no worker has laid
    /// out (a namespace or tag of no fleet) unless `config` may create it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), qfrefund_producer::Error> {
    /// use qfrefund_producer::{Producer, ProducerConfig};
    ///
    /// let config = ProducerConfig::builder()
    ///     .redis_url("redis://10.0.0.5:6379")
    ///     .namespace("shop")
    ///     .shards(4)
    ///     .merchant("default")
    ///     .build()?;
    /// let producer = Producer::connect(config).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: ProducerConfig) -> Result<Self, Error> {
        // Checked again: its fields are public, so it may have changed since it was built.
        let config = config.checked()?;
        let (create, pins, merchants) =
            (config.create_ledger, config.merchant_shards.clone(), config.merchants.clone());
        let (namespace, tag) = (config.namespace.clone(), config.queue_tag.clone());
        let (url, ledger_config, require_aof) = config.into_parts()?;
        let connect = |record_layout: bool| {
            let config = ledger::LedgerConfig { record_layout, ..ledger_config.clone() };
            let url = url.clone();
            async move {
                Ledger::connect_producer(&url, config, require_aof).await.map_err(|e| match e {
                    ledger::NotUsable::Ledger(e) => Error::not_a_write(e),
                    // A Redis set up to lose refunds stays so until someone changes it.
                    ledger::NotUsable::Refused(why) => Error::Ledger(format!("this Redis would lose refunds: {why}")),
                })
            }
        };
        // Connect without recording anything: a producer's pins must never become the fleet's.
        let mut ledger = connect(false).await?;
        let (shards, recorded) = ledger.recorded_layout().await.map_err(Error::not_a_write)?;
        match shards {
            // A new ledger, and this producer may be its first process: lay it out.
            None if create => ledger = connect(true).await?,
            None => {
                return Err(Error::Config {
                    setting: "namespace / queue_tag (QFREFUND_NAMESPACE, QFREFUND_QUEUE_TAG)".into(),
                    problem: format!(
                        "no ledger {namespace}:{{{tag}}} on this Redis: no worker has run with these settings, so \
                         nothing would send these refunds; use the workers' namespace and queue_tag (their \
                         QFREFUND_CONFIG), or start a worker first (ProducerConfigBuilder::create_ledger lets a \
                         producer lay out a new ledger)"
                    ),
                });
            }
            Some(_) => {
                if let Some((m, s)) = pins.iter().find(|(m, s)| recorded.get(*m) != Some(s)) {
                    return Err(Error::Config {
                        setting: "merchant_shards (QFREFUND_MERCHANT_SHARDS)".into(),
                        problem: format!(
                            "this producer pins merchant {m:?} to shard {s}, the ledger does not (its pins: \
                             {recorded:?}): pins are the workers' to set; use theirs"
                        ),
                    });
                }
            }
        }
        Ok(Self { ledger, merchants })
    }

    /// Enqueues one refund: [`Enqueued::Created`] when new, [`Enqueued::Duplicate`] when the same
    /// request was made before (the refund as it is now). A merchant neither the configuration
    /// ([`ProducerConfig::merchants`]) nor a live worker knows is refused ([`Error::Invalid`]);
    /// while no worker is live and the configuration names none, that cannot be told
    /// ([`Error::Unavailable`]: retry).
    ///
    /// ```no_run
    /// # async fn run(producer: qfrefund_producer::Producer) -> Result<(), qfrefund_producer::Error> {
    /// use qfrefund_producer::{Enqueued, NewRefund};
    ///
    /// let mut refund = NewRefund::new("10000000000000000000000003", "RF-1003", 1500);
    /// refund.merchant = Some("shop-b".into()); // a named merchant; `default` when None
    /// match producer.enqueue(refund).await {
    ///     Ok(Enqueued::Created(r) | Enqueued::Duplicate(r)) => println!("{} is {}", r.out_trade_no, r.state),
    ///     // Conflict (another request under this id) and Invalid: the request must change.
    ///     Err(e) if !e.is_retryable() => return Err(e),
    ///     // Unavailable or outcome unknown: the same request again is safe.
    ///     Err(e) => eprintln!("retry the same request later: {e}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn enqueue(&self, refund: NewRefund) -> Result<Enqueued, Error> {
        refund.clone().normalised().validate().map_err(ledger::LedgerError::Invalid)?;
        self.known_merchant(&refund).await?;
        Ok(self.ledger.enqueue(refund).await?)
    }

    /// Enqueues many refunds in few round trips; one result each, in order. Each is independent:
    /// a refused one does not stop the others. When Redis fails part way through, every line is
    /// read back: one found with its very request is accepted (as [`Accepted::Duplicate`]: it may
    /// have been written by this very call), one Redis answered for and did not write is
    /// [`Error::Unavailable`], and any other is [`Error::OutcomeUnknown`] — never "not written"
    /// for a line that may have been.
    ///
    /// ```no_run
    /// # async fn run(producer: qfrefund_producer::Producer) {
    /// use qfrefund_producer::NewRefund;
    ///
    /// let refunds: Vec<NewRefund> =
    ///     (1..=3).map(|i| NewRefund::new("10000000000000000000000004", &format!("RF-B{i}"), 100)).collect();
    /// for (refund, result) in ["RF-B1", "RF-B2", "RF-B3"].iter().zip(producer.enqueue_batch(refunds).await) {
    ///     match result {
    ///         Ok(accepted) => println!("{refund}: {accepted:?}"),
    ///         Err(e) if e.is_retryable() => println!("{refund}: send this line again ({e})"),
    ///         Err(e) => println!("{refund}: refused: {e}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn enqueue_batch(&self, refunds: Vec<NewRefund>) -> Vec<Result<Accepted, Error>> {
        let mut checked: Vec<Option<Error>> = Vec::with_capacity(refunds.len());
        // The configured merchants, and (read once, when a line names another) those live
        // workers announce.
        let mut known: std::collections::HashSet<String> = self.merchants.iter().cloned().collect();
        let mut announced_read = false;
        for r in &refunds {
            let q = r.clone().normalised();
            // An invalid line is the ledger's to refuse (it names the field).
            if q.validate().is_err() || known.contains(q.merchant()) {
                checked.push(None);
                continue;
            }
            if !announced_read {
                announced_read = true;
                if let Ok(served) = self.ledger.served_merchants().await {
                    known.extend(served);
                }
                if known.contains(q.merchant()) {
                    checked.push(None);
                    continue;
                }
            }
            // A refund of a merchant nothing knows, on its own: one already in the ledger is
            // never refused for its merchant, and a failed read is said as it is.
            checked.push(self.known_merchant(r).await.err());
        }
        let to_send: Vec<NewRefund> =
            refunds.iter().zip(&checked).filter(|(_, e)| e.is_none()).map(|(r, _)| r.clone()).collect();
        let mut sent = self.ledger.enqueue_batch_reported(to_send).await.into_iter();
        checked
            .into_iter()
            .map(|refused| match refused {
                Some(e) => Err(e),
                None => match sent.next() {
                    Some(ledger::LineFate::Created) => Ok(Accepted::Created),
                    Some(ledger::LineFate::Duplicate | ledger::LineFate::InLedger) => Ok(Accepted::Duplicate),
                    Some(ledger::LineFate::Refused(e)) => Err(Error::from(e)),
                    Some(ledger::LineFate::Unknown(why)) => Err(Error::OutcomeUnknown(unknown_reason(&why))),
                    None => Err(Error::OutcomeUnknown("the ledger returned fewer results than refunds".into())),
                },
            })
            .collect()
    }

    /// `merchant`'s refund `out_trade_no` as it is now (`None`: no such refund in Redis; a refund
    /// archived after its retention is in the archive).
    ///
    /// ```no_run
    /// # async fn run(producer: qfrefund_producer::Producer) -> Result<(), qfrefund_producer::Error> {
    /// if let Some(r) = producer.get("default", "RF-1003").await? {
    ///     println!("{}: {} (respcd {:?}, QFPay refund {:?})", r.out_trade_no, r.state, r.respcd, r.refund_syssn);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Record>, Error> {
        self.ledger.get(merchant, out_trade_no).await.map_err(Error::not_a_write)
    }

    /// Up to `count` outcomes from the outcome stream, after the entry id `after` (`"0"`: from the
    /// oldest kept, as is `""`; otherwise an [`Event`]'s `id`, `<ms>-<n>`). Each [`Event`] carries its `id`:
    /// pass the last one to read on.
    ///
    /// ```no_run
    /// # async fn run(producer: qfrefund_producer::Producer) -> Result<(), qfrefund_producer::Error> {
    /// let mut after = String::from("0");
    /// loop {
    ///     let page = producer.events(&after, 100).await?;
    ///     let Some(last) = page.last() else { break };
    ///     after = last.id.clone();
    ///     for e in &page {
    ///         println!("{} {} → {}", e.merchant, e.out_trade_no, e.state);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn events(&self, after: &str, count: usize) -> Result<Vec<Event>, Error> {
        let after = if after.is_empty() { "0" } else { after };
        if !stream_id(after) {
            return Err(Error::Invalid {
                field: "after".into(),
                problem: format!("an event id (`<ms>-<n>`) or 0, got {after:?}"),
            });
        }
        self.ledger.events(after, count).await.map_err(Error::not_a_write)
    }

    /// Refuses a refund whose merchant nothing would ever sign for (see [`Producer::enqueue`]).
    async fn known_merchant(&self, refund: &NewRefund) -> Result<(), Error> {
        match self.ledger.check_refund_merchant(refund, &self.merchants).await.map_err(Error::not_a_write)? {
            Ok(()) => Ok(()),
            // Nothing is configured and no worker is live (all restarting?): nothing to tell by.
            Err(unknown) if unknown.known.is_empty() => Err(Error::Unavailable(format!(
                "merchant {:?} cannot be checked: no live worker announces any merchant and the configuration \
                 names none",
                unknown.merchant
            ))),
            Err(unknown) => Err(Error::Invalid { field: "merchant".into(), problem: unknown.to_string() }),
        }
    }
}

/// `0`, `<ms>` or `<ms>-<n>` (decimal, each within u64).
fn stream_id(id: &str) -> bool {
    let mut parts = id.splitn(2, '-');
    let number = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u64>().is_ok())
    };
    let first = parts.next();
    match parts.next() {
        None => number(first),
        second => number(first) && number(second),
    }
}

/// The ledger's "unknown" line text, without its advice to re-run an import.
fn unknown_reason(why: &str) -> String {
    let why = why.strip_prefix(ledger::RERUN_ADVICE).unwrap_or(why).trim();
    let why = why.strip_prefix('(').and_then(|w| w.strip_suffix(')')).unwrap_or(why);
    if why.is_empty() { "the batch failed part way".to_owned() } else { why.to_owned() }
}
