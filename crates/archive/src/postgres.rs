//! The PostgreSQL sink (`postgres://…`): tables `refunds` (one row per refund, its record's
//! fields as columns and, whole, as `fields`), `refund_events` (its timeline) and
//! `refund_attempts` (the evidence of each request sent for it), so finance
//! can query the history in SQL. The schema is `migrations/*.sql`, applied in order at the first
//! use of the database (under an advisory lock: many workers may start at once). A write is one
//! transaction of bulk upserts; it returns once committed. Writing a refund again replaces its
//! row and its events unless the row holds a later archiving of it, so a re-run never
//! duplicates anything.

use std::collections::BTreeMap;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::{ArchiveError, ArchivedRefund, FORMAT, Written};

mod attempts;

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_archive.sql")),
    (2, include_str!("../migrations/0002_attempts.sql")),
    (3, include_str!("../migrations/0003_audit.sql")),
    (4, include_str!("../migrations/0004_attempts_fenced_off.sql")),
];

/// An arbitrary constant: the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x7166_7265_6675_6e64;

/// The PostgreSQL sink (see the module's documentation).
pub struct PgSink {
    url: String,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSink").field("url", &redact(&self.url)).finish_non_exhaustive()
    }
}

/// `url` (or a `key=value` connection string) without its password: the user part's and any
/// `password=` parameter's.
pub fn redact(url: &str) -> String {
    let mut out = match url.split_once("://").map(|(scheme, rest)| (scheme, rest.rsplit_once('@'))) {
        Some((scheme, Some((userinfo, host)))) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_owned(),
    };
    while let Some(at) = out.find("password=") {
        let start = at + "password=".len();
        if out[start..].starts_with("***") {
            break;
        }
        let end = out[start..].find(['&', ' ']).map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

/// PostgreSQL's text and jsonb take no NUL character: each becomes U+FFFD.
fn without_nul<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(v: &T) -> T {
    fn clean(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{fffd}"),
            serde_json::Value::Array(a) => a.iter_mut().for_each(clean),
            serde_json::Value::Object(o) => o.values_mut().for_each(clean),
            _ => {}
        }
    }
    let Ok(mut json) = serde_json::to_value(v) else { return v.clone() };
    clean(&mut json);
    serde_json::from_value(json).unwrap_or_else(|_| v.clone())
}

fn db(e: tokio_postgres::Error, url: &str) -> ArchiveError {
    ArchiveError::Database(format!("{}: {e}", redact(url)))
}

impl PgSink {
    pub fn new(url: String) -> Self {
        Self { url, client: Mutex::new(None) }
    }

    pub fn describe(&self) -> String {
        redact(&self.url)
    }

    /// The connection (made, and the schema migrated, at first use; made again after an error).
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, ArchiveError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let mut config: tokio_postgres::Config = self.url.parse().map_err(|e| db(e, &self.url))?;
            // A database that stops answering must not hold the archiving (and every archived
            // read) of this process for ever: connects time out, dead peers are found by TCP
            // keepalives, statements time out on the server.
            config
                .connect_timeout(std::time::Duration::from_secs(10))
                .keepalives(true)
                .keepalives_idle(std::time::Duration::from_secs(30))
                .options("-c statement_timeout=60000");
            let (mut client, connection) = config.connect(NoTls).await.map_err(|e| db(e, &self.url))?;
            let url = redact(&self.url);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(archive = %url, error = %e, "the archive database connection ended");
                }
            });
            migrate(&mut client).await.map_err(|e| db(e, &self.url))?;
            *guard = Some(client);
        }
        Ok(guard)
    }

    pub(crate) async fn write(&self, batch: Vec<ArchivedRefund>) -> Result<Written, ArchiveError> {
        if batch.is_empty() {
            return Ok(Written::default());
        }
        let batch: Vec<ArchivedRefund> = batch.iter().map(without_nul).collect();
        let mut guard = self.client().await?;
        let Some(client) = guard.as_mut() else { return Err(ArchiveError::Database("no connection".into())) };
        let result = upsert(client, &batch).await;
        if result.is_err() {
            // Whatever broke, the next write starts from a fresh connection.
            *guard = None;
        }
        let applied = result.map_err(|e| db(e, &self.url))?;
        Ok(Written { lines: applied, already: batch.len() as u64 - applied })
    }

    pub(crate) async fn write_audit(&self, batch: Vec<crate::AuditLine>) -> Result<Written, ArchiveError> {
        if batch.is_empty() {
            return Ok(Written::default());
        }
        let batch: Vec<crate::AuditLine> = batch.iter().map(without_nul).collect();
        let mut guard = self.client().await?;
        let Some(client) = guard.as_mut() else { return Err(ArchiveError::Database("no connection".into())) };
        let shards: Vec<i32> = batch.iter().map(|a| a.shard as i32).collect();
        let ids: Vec<&str> = batch.iter().map(|a| a.id.as_str()).collect();
        let field =
            |k: &str| -> Vec<String> { batch.iter().map(|a| a.fields.get(k).cloned().unwrap_or_default()).collect() };
        let at: Vec<i64> = batch.iter().map(|a| a.fields.get("at").and_then(|v| v.parse().ok()).unwrap_or(0)).collect();
        let fields: Vec<String> = batch.iter().map(|a| serde_json::to_string(&a.fields).unwrap_or_default()).collect();
        let written = client
            .execute(
                "INSERT INTO refund_audit (shard, stream_id, at, merchant, out_trade_no, action, who, why, outcome, fields) \
                 SELECT s, i, timestamptz 'epoch' + interval '1 millisecond' * a, m, o, ac, w, y, oc, f::jsonb \
                 FROM UNNEST($1::integer[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::text[], $10::text[]) AS u(s, i, a, m, o, ac, w, y, oc, f) \
                 ON CONFLICT (shard, stream_id) DO NOTHING",
                &[
                    &shards,
                    &ids,
                    &at,
                    &field("merchant"),
                    &field("out_trade_no"),
                    &field("action"),
                    &field("who"),
                    &field("why"),
                    &field("outcome"),
                    &fields,
                ],
            )
            .await;
        let written = match written {
            Ok(n) => n,
            Err(e) => {
                *guard = None;
                return Err(db(e, &self.url));
            }
        };
        Ok(Written { lines: written, already: batch.len() as u64 - written })
    }

    pub(crate) async fn find(
        &self,
        merchant: &str,
        out_trade_no: &str,
    ) -> Result<Option<ArchivedRefund>, ArchiveError> {
        let mut guard = self.client().await?;
        let Some(client) = guard.as_mut() else { return Err(ArchiveError::Database("no connection".into())) };
        let row = client
            .query_opt(
                "SELECT shard, state, fields::text, (extract(epoch FROM final_at) * 1000)::bigint, \
                 (extract(epoch FROM archived_at) * 1000)::bigint, created_at FROM refunds \
                 WHERE merchant = $1 AND out_trade_no = $2 ORDER BY created_at DESC LIMIT 1",
                &[&merchant, &out_trade_no],
            )
            .await
            .map_err(|e| db(e, &self.url))?;
        let Some(row) = row else { return Ok(None) };
        // The latest refund under this out_trade_no (an earlier one's tombstone was swept).
        let created_at: std::time::SystemTime = row.get(5);
        let bad = |what: String| ArchiveError::Database(format!("refund {merchant}/{out_trade_no}: {what}"));
        let state: String = row.get(1);
        let fields: String = row.get(2);
        let fields: BTreeMap<String, String> = serde_json::from_str(&fields).map_err(|e| bad(e.to_string()))?;
        let events = client
            .query(
                "SELECT (extract(epoch FROM at) * 1000)::bigint, state, respcd, resperr, refund_syssn, reason, last_error \
                 FROM refund_events WHERE merchant = $1 AND out_trade_no = $2 AND created_at = $3 ORDER BY seq",
                &[&merchant, &out_trade_no, &created_at],
            )
            .await
            .map_err(|e| db(e, &self.url))?;
        let timeline = events
            .iter()
            .map(|e| ledger::refund::timeline::TimelineEntry {
                at: e.get(0),
                state: e.get(1),
                respcd: e.get(2),
                resperr: e.get(3),
                refund_syssn: e.get(4),
                reason: e.get(5),
                last_error: e.get(6),
            })
            .collect();
        let attempts = attempts::read(client, merchant, out_trade_no, created_at).await.map_err(|e| match e {
            attempts::ReadError::Db(e) => db(e, &self.url),
            attempts::ReadError::Bad(why) => bad(why),
        })?;
        Ok(Some(ArchivedRefund {
            v: FORMAT,
            shard: row.get::<_, i32>(0).max(0) as usize,
            merchant: merchant.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            state: state.parse().map_err(|e: ledger::state::UnknownState| bad(e.to_string()))?,
            final_at: row.get(3),
            archived_at: row.get(4),
            fields,
            timeline,
            attempts,
        }))
    }
}

async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS qfrefund_migrations \
         (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    for (version, sql) in MIGRATIONS {
        let done = tx.query_opt("SELECT 1 FROM qfrefund_migrations WHERE version = $1", &[version]).await?;
        if done.is_none() {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO qfrefund_migrations (version) VALUES ($1)", &[version]).await?;
        }
    }
    tx.commit().await
}

/// A column of `batch`'s records: one value per refund.
fn col(batch: &[ArchivedRefund], field: &str) -> Vec<Option<String>> {
    batch.iter().map(|r| r.fields.get(field).filter(|v| !v.is_empty()).cloned()).collect()
}

fn num(batch: &[ArchivedRefund], field: &str) -> Vec<i64> {
    batch.iter().map(|r| r.fields.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)).collect()
}

/// The refund's `created_at` (ms): with (merchant, out_trade_no), what names its row.
fn created(r: &ArchivedRefund) -> i64 {
    r.fields.get("created_at").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Upserts `batch` in one transaction; how many rows it wrote (the others hold a later
/// archiving of the same refund).
async fn upsert(client: &mut Client, batch: &[ArchivedRefund]) -> Result<u64, tokio_postgres::Error> {
    let merchants: Vec<&str> = batch.iter().map(|r| r.merchant.as_str()).collect();
    let otns: Vec<&str> = batch.iter().map(|r| r.out_trade_no.as_str()).collect();
    let shards: Vec<i32> = batch.iter().map(|r| r.shard as i32).collect();
    let states: Vec<&str> = batch.iter().map(|r| r.state.as_str()).collect();
    let syssns: Vec<String> = col(batch, "syssn").into_iter().map(Option::unwrap_or_default).collect();
    let txamts = num(batch, "txamt");
    let origs: Vec<Option<i64>> =
        col(batch, "orig_txamt").into_iter().map(|v| v.and_then(|v| v.parse().ok())).collect();
    let final_at: Vec<i64> = batch.iter().map(|r| r.final_at).collect();
    let archived_at: Vec<i64> = batch.iter().map(|r| r.archived_at).collect();
    let fields: Vec<String> = batch.iter().map(|r| serde_json::to_string(&r.fields).unwrap_or_default()).collect();
    let tx = client.transaction().await?;
    let ms = "timestamptz 'epoch' + interval '1 millisecond' *";
    let applied = tx
        .query(
            &format!(
                "INSERT INTO refunds (merchant, out_trade_no, shard, state, syssn, txamt, orig_txamt, refund_syssn, respcd, \
                 resperr, reason, submits, enquiries, created_at, final_at, archived_at, fields) \
                 SELECT m, o, sh, st, sy, tx, ot, rs, rc, re, rn, su::integer, en::integer, {ms} ca, {ms} fa, {ms} aa, f::jsonb \
                 FROM UNNEST($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], \
                 $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[], \
                 $15::bigint[], $16::bigint[], $17::text[]) AS u(m, o, sh, st, sy, tx, ot, rs, rc, re, rn, su, en, ca, fa, aa, f) \
                 ON CONFLICT (merchant, out_trade_no, created_at) DO UPDATE SET shard = EXCLUDED.shard, state = EXCLUDED.state, \
                 syssn = EXCLUDED.syssn, txamt = EXCLUDED.txamt, orig_txamt = EXCLUDED.orig_txamt, \
                 refund_syssn = EXCLUDED.refund_syssn, respcd = EXCLUDED.respcd, resperr = EXCLUDED.resperr, \
                 reason = EXCLUDED.reason, submits = EXCLUDED.submits, enquiries = EXCLUDED.enquiries, \
                 final_at = EXCLUDED.final_at, archived_at = EXCLUDED.archived_at, \
                 fields = EXCLUDED.fields WHERE refunds.archived_at <= EXCLUDED.archived_at \
                 RETURNING merchant, out_trade_no, (extract(epoch FROM created_at) * 1000)::bigint"
            ),
            &[
                &merchants,
                &otns,
                &shards,
                &states,
                &syssns,
                &txamts,
                &origs,
                &col(batch, "refund_syssn"),
                &col(batch, "respcd"),
                &col(batch, "resperr"),
                &col(batch, "reason"),
                &num(batch, "submits"),
                &num(batch, "enquiries"),
                &num(batch, "created_at"),
                &final_at,
                &archived_at,
                &fields,
            ],
        )
        .await?;
    let written: std::collections::HashSet<(String, String, i64)> =
        applied.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, i64>(2))).collect();
    let mine: Vec<&ArchivedRefund> =
        batch.iter().filter(|r| written.contains(&(r.merchant.clone(), r.out_trade_no.clone(), created(r)))).collect();
    let dm: Vec<&str> = mine.iter().map(|r| r.merchant.as_str()).collect();
    let do_: Vec<&str> = mine.iter().map(|r| r.out_trade_no.as_str()).collect();
    let dc: Vec<i64> = mine.iter().map(|r| created(r)).collect();
    let same = "x.merchant = u.m AND x.out_trade_no = u.o AND x.created_at = timestamptz 'epoch' + interval '1 millisecond' * u.c";
    tx.execute(
        &format!(
            "DELETE FROM refund_events x USING UNNEST($1::text[], $2::text[], $3::bigint[]) AS u(m, o, c) WHERE {same}"
        ),
        &[&dm, &do_, &dc],
    )
    .await?;
    let mut em: Vec<&str> = Vec::new();
    let mut eo: Vec<&str> = Vec::new();
    let mut ec: Vec<i64> = Vec::new();
    let mut seq: Vec<i32> = Vec::new();
    let mut at: Vec<i64> = Vec::new();
    let mut st: Vec<&str> = Vec::new();
    let mut texts: [Vec<Option<&str>>; 5] = Default::default();
    for r in &mine {
        for (i, e) in r.timeline.iter().enumerate() {
            em.push(&r.merchant);
            eo.push(&r.out_trade_no);
            ec.push(created(r));
            seq.push(i as i32);
            at.push(e.at);
            st.push(&e.state);
            for (col, v) in texts.iter_mut().zip([&e.respcd, &e.resperr, &e.refund_syssn, &e.reason, &e.last_error]) {
                col.push(v.as_deref());
            }
        }
    }
    tx.execute(
        &format!(
            "INSERT INTO refund_events (merchant, out_trade_no, created_at, seq, at, state, respcd, resperr, refund_syssn, \
             reason, last_error) SELECT m, o, {ms} c, s, {ms} a, st, rc, re, rs, rn, le FROM UNNEST($1::text[], \
             $2::text[], $11::bigint[], $3::integer[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], \
             $9::text[], $10::text[]) AS u(m, o, c, s, a, st, rc, re, rs, rn, le)"
        ),
        &[&em, &eo, &seq, &at, &st, &texts[0], &texts[1], &texts[2], &texts[3], &texts[4], &ec],
    )
    .await?;
    tx.execute(
        &format!(
            "DELETE FROM refund_attempts x USING UNNEST($1::text[], $2::text[], $3::bigint[]) AS u(m, o, c) WHERE {same}"
        ),
        &[&dm, &do_, &dc],
    )
    .await?;
    attempts::insert(&tx, &mine, created).await?;
    tx.commit().await?;
    Ok(mine.len() as u64)
}
