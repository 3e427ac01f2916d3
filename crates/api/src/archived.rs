//! Refunds archived and removed from Redis, as `GET …/refunds/{out_trade_no}` answers them: the
//! summary Redis keeps of a final refund archived early (see `ledger::store::summary`), else
//! the record from the archive when this process can read it, else what the tombstone keeps
//! (its final state and respcd, the request's fields empty); `"archived": true` either way.

use std::collections::HashMap;

use ledger::Record;

use crate::Shared;
use crate::error::ApiError;

pub(crate) async fn record(st: &Shared, merchant: &str, out_trade_no: &str) -> Result<Option<Record>, ApiError> {
    if let Some(summary) = st.ledger.summary(merchant, out_trade_no).await? {
        return Ok(Some(summary));
    }
    let Some(tomb) = st.ledger.tombstone(merchant, out_trade_no).await? else { return Ok(None) };
    let Some(sink) = &st.archive else { return Ok(Some(Record::from_tombstone(&tomb))) };
    let line = sink.find(st.ledger.shard_of(merchant), &tomb.archived_on, merchant, out_trade_no).await;
    let found = match line {
        Ok(Some(line)) => {
            let fields: HashMap<String, String> = line.fields.into_iter().collect();
            let id = ledger::refund::placement::refund_id(merchant, out_trade_no);
            Record::from_hash(&st.ledger.keys_for(merchant).record(&id), &fields).ok().map(|mut r| {
                ledger::refund::timeline::restore_texts(&mut r, &line.timeline);
                r
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading the archive failed; answering from the tombstone");
            None
        }
    };
    Ok(Some(match found {
        Some(mut r) => {
            r.archived = true;
            r
        }
        None => Record::from_tombstone(&tomb),
    }))
}
