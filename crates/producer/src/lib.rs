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
//! let mut refund = NewRefund::new("20251125000100020000000001", "RF-1001", 1500);
//! refund.orig_txamt = Some(5000);
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
}

impl Producer {
    /// Connects with the settings the workers read from the environment (and from the file
    /// `QFREFUND_CONFIG` names, if any): see [`ProducerConfig::from_env`].
    pub async fn from_env() -> Result<Self, Error> {
        Self::connect(ProducerConfig::from_env()?).await
    }

    /// Connects with `config`, refusing a Redis that could lose refunds (an evicting
    /// `maxmemory-policy`; no append-only file unless `require_aof` is off) and a ledger laid out
    /// otherwise than `config` says (shards, merchant placement).
    pub async fn connect(config: ProducerConfig) -> Result<Self, Error> {
        let (url, ledger_config, require_aof) = config.into_parts()?;
        let ledger = Ledger::connect_producer(&url, ledger_config, require_aof).await.map_err(|e| match e {
            ledger::NotUsable::Ledger(e) => Error::from(e),
            // A Redis set up to lose refunds stays so until someone changes it.
            ledger::NotUsable::Refused(why) => Error::Ledger(format!("this Redis would lose refunds: {why}")),
        })?;
        Ok(Self { ledger })
    }

    /// Enqueues one refund: [`Enqueued::Created`] when new, [`Enqueued::Duplicate`] when the same
    /// request was made before (the refund as it is now).
    pub async fn enqueue(&self, refund: NewRefund) -> Result<Enqueued, Error> {
        Ok(self.ledger.enqueue(refund).await?)
    }

    /// Enqueues many refunds in few round trips; one result each, in order. Each is independent:
    /// a refused one does not stop the others.
    pub async fn enqueue_batch(&self, refunds: Vec<NewRefund>) -> Vec<Result<Accepted, Error>> {
        self.ledger.enqueue_batch(refunds).await.into_iter().map(|r| r.map_err(Error::from)).collect()
    }

    /// `merchant`'s refund `out_trade_no` as it is now (`None`: no such refund in Redis; a refund
    /// archived after its retention is in the archive).
    pub async fn get(&self, merchant: &str, out_trade_no: &str) -> Result<Option<Record>, Error> {
        Ok(self.ledger.get(merchant, out_trade_no).await?)
    }

    /// Up to `count` outcomes from the outcome stream, after the entry id `after` (`"0"`: from the
    /// oldest kept). Each [`Event`] carries its `id`: pass the last one to read on.
    pub async fn events(&self, after: &str, count: usize) -> Result<Vec<Event>, Error> {
        Ok(self.ledger.events(after, count).await?)
    }
}
