//! The `refund_attempts` table: the evidence of every request sent for a refund.

use tokio_postgres::Client;

use crate::ArchivedRefund;

pub(super) enum ReadError {
    Db(tokio_postgres::Error),
    Bad(String),
}

/// The attempts of the refund (merchant, out_trade_no, created_at), in the order they were sent.
pub(super) async fn read(
    client: &Client,
    merchant: &str,
    out_trade_no: &str,
    created_at: std::time::SystemTime,
) -> Result<Vec<qfpay::Evidence>, ReadError> {
    let rows = client
        .query(
            "SELECT call, (extract(epoch FROM sent_at) * 1000)::bigint, took_ms, params::text, sign_sha256, \
             sign_type, http_status, body, body_truncated, error, fenced_off FROM refund_attempts \
             WHERE merchant = $1 AND out_trade_no = $2 AND created_at = $3 ORDER BY seq",
            &[&merchant, &out_trade_no, &created_at],
        )
        .await
        .map_err(ReadError::Db)?;
    let mut attempts = Vec::with_capacity(rows.len());
    for a in &rows {
        let params: String = a.get(3);
        attempts.push(qfpay::Evidence {
            call: a.get(0),
            sent_at: a.get(1),
            took_ms: a.get::<_, i64>(2).max(0) as u64,
            params: serde_json::from_str(&params).map_err(|e| ReadError::Bad(e.to_string()))?,
            sign_sha256: a.get(4),
            sign_type: a.get(5),
            http_status: a.get::<_, Option<i32>>(6).map(|s| s.clamp(0, i32::from(u16::MAX)) as u16),
            body: a.get(7),
            body_truncated: a.get(8),
            error: a.get(9),
            fenced_off: a.get(10),
        });
    }
    Ok(attempts)
}

/// Inserts the attempts of `refunds` (their earlier rows were just deleted), in one
/// statement. `created`: a refund's `created_at` (ms).
pub(super) async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    refunds: &[&ArchivedRefund],
    created: fn(&ArchivedRefund) -> i64,
) -> Result<(), tokio_postgres::Error> {
    let (mut m, mut o, mut seq, mut call, mut sent, mut took) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut created_at: Vec<i64> = Vec::new();
    let (mut params, mut sign, mut sign_type, mut status, mut body, mut cut, mut error, mut fenced) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in refunds {
        for (i, a) in r.attempts.iter().enumerate() {
            m.push(r.merchant.as_str());
            o.push(r.out_trade_no.as_str());
            created_at.push(created(r));
            seq.push(i as i32);
            call.push(a.call.as_str());
            sent.push(a.sent_at);
            took.push(a.took_ms as i64);
            params.push(serde_json::to_string(&a.params).unwrap_or_default());
            sign.push(a.sign_sha256.as_str());
            sign_type.push(a.sign_type.as_str());
            status.push(a.http_status.map(i32::from));
            body.push(a.body.as_deref());
            cut.push(a.body_truncated);
            error.push(a.error.as_deref());
            fenced.push(a.fenced_off);
        }
    }
    tx.execute(
        "INSERT INTO refund_attempts (merchant, out_trade_no, created_at, seq, call, sent_at, took_ms, params, \
         sign_sha256, sign_type, http_status, body, body_truncated, error, fenced_off) \
         SELECT m, o, timestamptz 'epoch' + interval '1 millisecond' * ca, s, c, \
         timestamptz 'epoch' + interval '1 millisecond' * sa, t, p::jsonb, sg, st, hs, b, bt, e, f \
         FROM UNNEST($1::text[], $2::text[], $14::bigint[], $3::integer[], $4::text[], $5::bigint[], $6::bigint[], \
         $7::text[], $8::text[], $9::text[], $10::integer[], $11::text[], $12::boolean[], $13::text[], \
         $15::boolean[]) AS u(m, o, ca, s, c, sa, t, p, sg, st, hs, b, bt, e, f)",
        &[
            &m,
            &o,
            &seq,
            &call,
            &sent,
            &took,
            &params,
            &sign,
            &sign_type,
            &status,
            &body,
            &cut,
            &error,
            &created_at,
            &fenced,
        ],
    )
    .await?;
    Ok(())
}
