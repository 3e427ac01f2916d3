//! Enqueueing refunds: one at a time (the record read back) or in pipelined batches (imports).

use crate::error::LedgerError;
use crate::refund::placement::refund_id;
use crate::refund::record::Record;
use crate::refund::request::NewRefund;
use crate::refund::tombstone::Tombstone;
use crate::store::Ledger;
use crate::store::args::script_args;
use crate::store::conn::RedisConn;
use crate::store::durable;
use crate::store::script::{ENQUEUE, ENQUEUE_MANY};

/// Refunds per `enqueue_many` call: large enough to spread the per-call cost, small enough that
/// one call holds Redis for well under a millisecond.
const ENQUEUE_PER_CALL: usize = 100;

/// What a batch enqueue did with one accepted line (no record is read back: imports stay one
/// round trip per chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Created,
    /// The same request was enqueued before; nothing changed.
    Duplicate,
}

/// The result of an accepted enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Created(Record),
    /// The same request was enqueued before: this is that record, unchanged.
    Duplicate(Record),
}

impl Enqueued {
    pub fn record(&self) -> &Record {
        match self {
            Enqueued::Created(r) | Enqueued::Duplicate(r) => r,
        }
    }
}

script_args! {
    /// What `enqueue.lua` takes; the record's field/value pairs follow. `orig_txamt`: '' = unknown.
    pub struct EnqueueArgs<'a> { id: &'a str, payload_hash: String, now: i64, maxlen: u64, orig_txamt: String, compact: bool }
}

script_args! {
    /// What `enqueue_many.lua` takes; then, per refund: its id, payload_hash, orig_txamt
    /// ('' = unknown), the number of fields and the field/value pairs.
    pub struct EnqueueManyArgs { now: i64, maxlen: u64, count: usize, compact: bool }
}

impl Ledger {
    /// Enqueues one refund: created, or the existing record for the same request; a conflict for
    /// another request under the same `(merchant, out_trade_no)`.
    pub async fn enqueue(&self, refund: NewRefund) -> Result<Enqueued, LedgerError> {
        let refund = refund.normalised();
        refund.validate()?;
        let shard = self.shard_of(refund.merchant());
        self.reread_compact_queue().await;
        let inv = self.enqueue_invocation(&refund, self.now_ms());
        let mut con = self.con.clone();
        let (reply, durable): (Vec<String>, bool) =
            durable::invoke(&mut con, &inv, &self.durability(self.fsyncs_on_demand()), &self.probe_key(shard)).await?;
        if !durable {
            self.recheck_fsync().await;
            return Err(LedgerError::NotReplicated(self.config.wait_replicas));
        }
        let out = self.enqueue_outcome(&refund, &reply).await;
        self.wake(shard).await;
        out
    }

    /// Enqueues many refunds in pipelined chunks (one round trip per chunk; a chunk holds the
    /// refunds of one shard). One result per input, in order; an invalid line is reported without
    /// touching Redis.
    pub async fn enqueue_batch(&self, refunds: Vec<NewRefund>) -> Vec<Result<Accepted, LedgerError>> {
        let mut results: Vec<Option<Result<Accepted, LedgerError>>> = Vec::with_capacity(refunds.len());
        let mut by_shard: Vec<Vec<(usize, NewRefund)>> = vec![Vec::new(); self.shard_count()];
        for (i, r) in refunds.into_iter().enumerate() {
            let r = r.normalised();
            match r.validate() {
                Ok(()) => {
                    results.push(None);
                    by_shard[self.shard_of(r.merchant())].push((i, r));
                }
                Err(e) => results.push(Some(Err(e.into()))),
            }
        }
        let mut con = self.con.clone();
        let mut chunks: Vec<(usize, &[(usize, NewRefund)])> = Vec::new();
        for (shard, v) in by_shard.iter().enumerate() {
            for c in v.chunks(500) {
                chunks.push((shard, c));
            }
        }
        for (shard, chunk) in chunks {
            match self.enqueue_chunk(&mut con, shard, chunk).await {
                // Written but not durable in time: none of the chunk counts as accepted (importing
                // again is idempotent).
                Ok((_, false)) => {
                    for (i, _) in chunk {
                        results[*i] = Some(Err(LedgerError::NotReplicated(self.config.wait_replicas)));
                    }
                }
                Ok((replies, true)) => {
                    for ((i, r), reply) in chunk.iter().zip(replies) {
                        results[*i] = Some(match reply.first().map(String::as_str) {
                            Some("created") => Ok(Accepted::Created),
                            Some("duplicate" | "archived_duplicate") => Ok(Accepted::Duplicate),
                            _ => self.enqueue_outcome(r, &reply).await.map(|_| Accepted::Created),
                        });
                    }
                }
                Err(e) => {
                    for (i, _) in chunk {
                        results[*i] = Some(Err(LedgerError::Redis(e.clone())));
                    }
                }
            }
        }
        for (shard, v) in by_shard.iter().enumerate() {
            if !v.is_empty() {
                self.wake(shard).await;
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(LedgerError::Script("no result".into())))).collect()
    }

    async fn enqueue_chunk(
        &self,
        con: &mut RedisConn,
        shard: usize,
        chunk: &[(usize, NewRefund)],
    ) -> Result<(Vec<Vec<String>>, bool), redis::RedisError> {
        self.reread_compact_queue().await;
        let now = self.now_ms();
        let wait = self.durability(self.fsyncs_on_demand());
        // Pipelines do not load scripts by themselves: load once, retry once after a NOSCRIPT
        // (a Redis restarted between the two).
        for attempt in 0..2 {
            if attempt == 1 || !self.script_loaded(con).await {
                ENQUEUE_MANY.prepare_invoke().load_async(con).await?;
            }
            let mut pipe = redis::pipe();
            for part in chunk.chunks(ENQUEUE_PER_CALL) {
                pipe.invoke_script(&self.enqueue_many_invocation(shard, part, now));
            }
            // The wait shares the pipeline, so it counts from these writes (see `durable`).
            match durable::query_pipeline(con, pipe, &wait, &self.probe_key(shard)).await {
                Err(e) if attempt == 0 && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {}
                Err(e) => return Err(e),
                // One answer per refund, its words split as enqueue answers them.
                Ok((parts, durable)) => {
                    let parts =
                        parts.into_iter().map(redis::from_redis_value::<Vec<String>>).collect::<Result<Vec<_>, _>>()?;
                    let answers =
                        parts.into_iter().flatten().map(|a| a.split(' ').map(str::to_owned).collect()).collect();
                    return Ok((answers, durable));
                }
            }
        }
        Err(redis::RedisError::from((redis::ErrorKind::Io, "enqueue script could not be loaded")))
    }

    fn enqueue_many_invocation<'a>(
        &self,
        shard: usize,
        part: &[(usize, NewRefund)],
        now: i64,
    ) -> redis::ScriptInvocation<'a> {
        let keys = self.shard_keys(shard);
        let mut inv = ENQUEUE_MANY.prepare_invoke();
        for (i, (_, r)) in part.iter().enumerate() {
            let id = refund_id(r.merchant(), &r.out_trade_no);
            if i == 0 {
                for k in keys.script_keys(&id, &r.syssn) {
                    inv.key(k);
                }
                inv.key(keys.merchants()).key(keys.excluded()).key(keys.layout());
            } else {
                inv.key(keys.record(&id)).key(keys.payment(&r.syssn));
            }
        }
        EnqueueManyArgs { now, maxlen: self.config.events_maxlen, count: part.len(), compact: self.compact_queue() }
            .push(&mut inv);
        for (_, r) in part {
            let fields = r.fields();
            inv.arg(refund_id(r.merchant(), &r.out_trade_no))
                .arg(r.payload_hash())
                .arg(r.orig_txamt.map(|v| v.to_string()).unwrap_or_default())
                .arg(fields.len());
            for (k, v) in fields {
                inv.arg(k).arg(v);
            }
        }
        inv
    }

    async fn script_loaded(&self, con: &mut RedisConn) -> bool {
        redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(ENQUEUE_MANY.get_hash())
            .query_async::<Vec<bool>>(con)
            .await
            .is_ok_and(|v| v.first().copied().unwrap_or(false))
    }

    fn enqueue_invocation<'a>(&self, r: &NewRefund, now: i64) -> redis::ScriptInvocation<'a> {
        let id = refund_id(r.merchant(), &r.out_trade_no);
        let mut inv = self.on_record(&ENQUEUE, r.merchant(), &id, &r.syssn);
        let keys = self.keys_for(r.merchant());
        inv.key(keys.merchants()).key(keys.excluded()).key(keys.layout());
        EnqueueArgs {
            id: &id,
            payload_hash: r.payload_hash(),
            now,
            maxlen: self.config.events_maxlen,
            orig_txamt: r.orig_txamt.map(|v| v.to_string()).unwrap_or_default(),
            compact: self.compact_queue(),
        }
        .push(&mut inv);
        for (k, v) in r.fields() {
            inv.arg(k).arg(v);
        }
        inv
    }

    async fn enqueue_outcome(&self, r: &NewRefund, reply: &[String]) -> Result<Enqueued, LedgerError> {
        // The script has run: whatever fails now, the caller must not read it as "not written".
        // The record is the one the script found or made, under the id it answered.
        let shard = self.shard_of(r.merchant());
        let id = reply.get(1).cloned().unwrap_or_default();
        let load = || async {
            match self.get_in(shard, &id).await {
                Ok(Some(rec)) => Ok(rec),
                Ok(None) => Err(LedgerError::Script("record vanished".into())),
                Err(e) => Err(LedgerError::Unread(e.to_string())),
            }
        };
        // An archived refund's tombstone follows its id: `<hash12> <day> <state> <respcd>`.
        let tomb = || {
            let raw = reply.get(2..).map(|w| w.join(" ")).unwrap_or_default();
            Tombstone::parse(r.merchant(), &r.out_trade_no, &raw)
                .ok_or_else(|| LedgerError::Script(format!("enqueue answered an unreadable tombstone: {reply:?}")))
        };
        match reply.first().map(String::as_str) {
            Some("created") => Ok(Enqueued::Created(load().await?)),
            // A succeeded refund archived early answers with its summary while it lasts.
            Some("archived_duplicate") => match self.summary(r.merchant(), &r.out_trade_no).await? {
                Some(summary) => Ok(Enqueued::Duplicate(summary)),
                None => Ok(Enqueued::Duplicate(Record::archived(r, &tomb()?))),
            },
            Some("archived_conflict") => {
                let t = tomb()?;
                // Only its outcome is known here (or its summary); the request it was is in the archive.
                let existing = match self.summary(r.merchant(), &r.out_trade_no).await? {
                    Some(summary) => summary,
                    None => Record::from_tombstone(&t),
                };
                Err(LedgerError::Conflict {
                    out_trade_no: r.out_trade_no.clone(),
                    differences: vec![format!(
                        "the refund under this out_trade_no was archived on {} ({}) and was made by another                          request (the archive keeps it)",
                        t.archived_on, t.state
                    )],
                    existing: Box::new(existing),
                })
            }
            Some("duplicate") => Ok(Enqueued::Duplicate(load().await?)),
            Some("conflict") => {
                let existing = load().await?;
                Err(LedgerError::Conflict {
                    out_trade_no: r.out_trade_no.clone(),
                    differences: r.differences(&existing),
                    existing: Box::new(existing),
                })
            }
            Some("paid_mismatch") => Err(LedgerError::PaidMismatch {
                syssn: r.syssn.clone(),
                recorded: reply.get(1).cloned().unwrap_or_default(),
                given: r.orig_txamt.unwrap_or(0),
            }),
            Some("misplaced") => Err(LedgerError::Layout(format!(
                "merchant {:?} is placed on another shard of this ledger than this process's configuration \
                 places it: its merchant_shards (QFREFUND_MERCHANT_SHARDS) are out of date; restart it with the \
                 ledger's (nothing was written)",
                r.merchant()
            ))),
            _ => Err(LedgerError::Script(format!("enqueue answered {reply:?}"))),
        }
    }
}
