//! Consumer groups on the outcome stream: each entry is handed to one consumer of a group, which
//! acknowledges it once handled; an entry a vanished consumer read but never acknowledged can be
//! taken over by another. The webhook deliverer follows the stream this way, one group per
//! merchant (on its merchant's shard); the group names are the reader's, the streams (one per
//! shard) are the ledger's.
//!
//! A [`StreamReader`] blocks on a connection of its own, so its blocking read never holds up the
//! ledger's shared connection; what does not block (taking over, acknowledging) uses the shared one.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingReply, StreamReadReply};

use crate::error::LedgerError;
use crate::refund::event::Event;
use crate::store::Ledger;
use crate::store::conn::RedisConn;

impl Ledger {
    /// Creates consumer group `group` on the outcome stream (and the stream, if there is none
    /// yet). The group is handed the entries after the id `after`, or, when `None`, only those
    /// added from now on. `Ok(false)`: the group exists already and is left where it stands.
    pub async fn create_group(&self, shard: usize, group: &str, after: Option<&str>) -> Result<bool, LedgerError> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.shard_keys(shard).events())
            .arg(group)
            .arg(after.unwrap_or("$"))
            .arg("MKSTREAM")
            .query_async(&mut self.con.clone())
            .await;
        match created {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Where consumer group `group` stands, as the id a new group should start after to miss
    /// nothing `group` has not finished: just before its oldest entry read but not acknowledged,
    /// else the last entry it was handed. `None` without that group (or without the stream).
    pub async fn group_position(&self, shard: usize, group: &str) -> Result<Option<String>, LedgerError> {
        let mut con = self.con.clone();
        let events = self.shard_keys(shard).events();
        let groups: StreamInfoGroupsReply = match con.xinfo_groups(&events).await {
            Ok(groups) => groups,
            // Without the stream, XINFO answers "no such key": look whether that is why. The
            // stream may have been created just after (an enqueue): then ask again.
            Err(e) => {
                let exists: bool = con.exists(&events).await?;
                if !exists {
                    return Ok(None);
                }
                match con.xinfo_groups(&events).await {
                    Ok(groups) => groups,
                    Err(_) => return Err(e.into()),
                }
            }
        };
        let Some(found) = groups.groups.into_iter().find(|g| g.name == group) else {
            return Ok(None);
        };
        if found.pending > 0
            && let StreamPendingReply::Data(pending) = con.xpending(&events, group).await?
        {
            return Ok(Some(id_before(&pending.start_id)));
        }
        Ok(Some(found.last_delivered_id).filter(|id| !id.is_empty()))
    }

    /// A reader for `consumer` of group `group` on shard `shard`'s outcome stream, with a connection of its
    /// own for its blocking reads (connected now; it reconnects by itself afterwards, and with
    /// Sentinel follows the primary). The group must exist: see [`Ledger::create_group`].
    pub async fn stream_reader(&self, shard: usize, group: &str, consumer: &str) -> Result<StreamReader, LedgerError> {
        Ok(StreamReader {
            con: self.connect_again().await?,
            shared: self.con.clone(),
            events: self.shard_keys(shard).events(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
        })
    }
}

/// One consumer of one consumer group on the outcome stream (see [`Ledger::stream_reader`]).
/// Entries come as [`Event`]s whose `id` is the stream id, the id to acknowledge.
///
/// Every call answers [`LedgerError::NoGroup`] when the group is gone (Redis lost the stream, e.g.
/// restarted without AOF): create it again and read on.
pub struct StreamReader {
    /// The reader's own connection: a blocking read holds it for as long as it waits.
    con: RedisConn,
    /// The ledger's shared connection, for what never blocks.
    shared: RedisConn,
    events: String,
    group: String,
    consumer: String,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl StreamReader {
    /// The group this reader consumes.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Entries no consumer of the group has been handed yet, at most `count`, oldest first;
    /// waits up to `block` for one when there is none. They are this consumer's from now on, read
    /// but pending until acknowledged ([`StreamReader::ack`]).
    pub async fn read_new(&mut self, count: usize, block: Duration) -> Result<Vec<Event>, LedgerError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.events)
            .arg(">")
            .query_async(&mut self.con)
            .await
            .map_err(|e| self.no_group(e))?;
        Ok(reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).map(event_of).collect())
    }

    /// Entries of the group that some consumer read and has not acknowledged for at least
    /// `min_idle` (it stopped, most likely), at most `count`, oldest first: now this consumer's.
    pub async fn take_over(&self, min_idle: Duration, count: usize) -> Result<Vec<Event>, LedgerError> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.events)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.shared.clone())
            .await
            .map_err(|e| self.no_group(e))?;
        Ok(reply.claimed.into_iter().map(event_of).collect())
    }

    /// Acknowledges entries by their stream ids, in one round trip: the group never hands them
    /// out again.
    pub async fn ack(&self, ids: &[String]) -> Result<(), LedgerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: u64 = self.shared.clone().xack(&self.events, &self.group, ids).await.map_err(|e| self.no_group(e))?;
        Ok(())
    }

    fn no_group(&self, e: redis::RedisError) -> LedgerError {
        if e.code() == Some("NOGROUP") { LedgerError::NoGroup(self.group.clone()) } else { e.into() }
    }
}

/// A stream entry as an [`Event`] (its id the stream id); fields that are not text are left out.
fn event_of(entry: StreamId) -> Event {
    let fields: HashMap<String, String> =
        entry.map.into_iter().filter_map(|(k, v)| redis::from_redis_value::<String>(v).ok().map(|v| (k, v))).collect();
    Event::from_fields(entry.id, fields)
}

/// The stream id just before `id` (`XGROUP CREATE` hands out what comes after its id).
fn id_before(id: &str) -> String {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    let (ms, seq) = (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0));
    match (ms, seq) {
        (_, s) if s > 0 => format!("{ms}-{}", s - 1),
        (0, _) => "0-0".into(),
        (m, _) => format!("{}-{}", m - 1, u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_before_a_stream_id_is_just_before_it() {
        assert_eq!(id_before("1700000000000-3"), "1700000000000-2");
        assert_eq!(id_before("1700000000000-0"), format!("1699999999999-{}", u64::MAX));
        assert_eq!(id_before("0-0"), "0-0");
    }
}
