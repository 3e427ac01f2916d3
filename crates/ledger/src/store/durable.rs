//! Making a write durable before anyone acts on it.
//!
//! `WAIT` and `WAITAOF` answer for the *connection* they are sent on: they count from that
//! connection's last write. The connection every part of a process shares reconnects by itself
//! (a network blip, `CLIENT KILL`, a managed endpoint failing over), and a `WAIT` sent on a fresh
//! connection counts from zero: it answers "replicated" at once, for a write it never saw. So the
//! write and its wait always travel in **one pipeline**: a pipeline goes out on one physical
//! connection, and if that connection breaks, the pipeline fails as a whole and nothing is
//! vouched for. A broken pipeline whose write did land is "not durable" (the claim's lease then
//! expires and the refund is tried again; an enqueue answers "outcome unknown, retry").
//!
//! A wait also counts only from the connection's last write that *propagated*: a script that
//! writes nothing (an enqueue answering "duplicate", a claim that only reads) would leave it where
//! it was — at zero on a fresh connection — and the wait would vouch at once for a record written
//! earlier by someone else, perhaps never replicated. So every wait follows a small write of its
//! own (a probe key under the ledger's hash tag, expiring): the wait then covers everything the
//! primary had applied up to that point, the record included.
//!
//! An error of the wait itself (`WAITAOF` on a primary without AOF after a failover, an ACL that
//! forbids `WAIT`) is "not durable", never an error of the write: the write had already run.

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, ScriptInvocation, Value};

/// What a write must reach before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// fsynced to the primary's append-only file (`WAITAOF`, Redis ≥ 7.2 with AOF on).
    pub local_aof: bool,
    /// Held by this many replicas.
    pub replicas: usize,
    /// How long to wait for both (ms).
    pub timeout_ms: u64,
}

impl Durability {
    /// Nothing to wait for: no round trip is spent.
    pub fn none() -> Self {
        Self { local_aof: false, replicas: 0, timeout_ms: 0 }
    }

    pub fn wanted(&self) -> bool {
        self.local_aof || self.replicas > 0
    }

    /// Appends the probe write and the wait to `pipe` (after the write they must vouch for).
    pub fn push_wait(&self, pipe: &mut redis::Pipeline, probe: &str) {
        pipe.cmd("SET").arg(probe).arg(1).arg("PX").arg(60_000);
        if self.local_aof {
            pipe.cmd("WAITAOF").arg(1).arg(self.replicas).arg(self.timeout_ms);
        } else if self.replicas > 0 {
            pipe.cmd("WAIT").arg(self.replicas).arg(self.timeout_ms);
        }
    }

    /// Reads the wait's answer: whether the write reached what was asked.
    pub fn judge(&self, reply: &Value) -> bool {
        let int = |v: &Value| match v {
            Value::Int(n) => Some(*n),
            _ => None,
        };
        if self.local_aof {
            match reply {
                Value::Array(v) if v.len() == 2 => {
                    int(&v[0]).is_some_and(|l| l >= 1) && int(&v[1]).is_some_and(|r| r >= self.replicas as i64)
                }
                _ => false,
            }
        } else if self.replicas > 0 {
            int(reply).is_some_and(|r| r >= self.replicas as i64)
        } else {
            true
        }
    }

    /// Whether the probe write and the wait (the last two answers of a pipeline) say durable.
    fn judge_tail(&self, probe: Option<redis::RedisResult<Value>>, wait: Option<redis::RedisResult<Value>>) -> bool {
        matches!(probe, Some(Ok(_))) && matches!(wait, Some(Ok(ref w)) if self.judge(w))
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Runs a script and, on the same connection in the same pipeline, waits for `d`. Returns the
/// script's answer and whether it is durable. Without anything to wait for it is a plain call.
/// `probe`: the key the wait's own write goes to (see the module's notes).
pub async fn invoke<T, C>(
    con: &mut C,
    inv: &ScriptInvocation<'_>,
    d: &Durability,
    probe: &str,
) -> Result<(T, bool), redis::RedisError>
where
    T: FromRedisValue,
    C: ConnectionLike + Send,
{
    if !d.wanted() {
        return Ok((inv.invoke_async(con).await?, true));
    }
    // Pipelines do not load scripts by themselves: load once after a NOSCRIPT (a Redis that
    // restarted or failed over since the last call) and try again.
    for attempt in 0..2 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors().invoke_script(inv);
        d.push_wait(&mut pipe, probe);
        let mut replies = pipe.query_async::<Vec<redis::RedisResult<Value>>>(con).await?.into_iter();
        match replies.next() {
            Some(Err(e)) if attempt == 0 && is_noscript(&e) => {
                inv.load_async(con).await?;
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(answer)) => {
                let durable = d.judge_tail(replies.next(), replies.next());
                return Ok((T::from_redis_value(answer)?, durable));
            }
            None => break,
        }
    }
    Err(redis::RedisError::from((redis::ErrorKind::Io, "script could not be loaded")))
}

/// Runs a prepared pipeline of writes and, in the same pipeline, waits for `d`. The first error of
/// the writes is the call's error (as for a plain pipeline); an error of the wait only means "not
/// durable".
pub async fn query_pipeline<C>(
    con: &mut C,
    mut pipe: redis::Pipeline,
    d: &Durability,
    probe: &str,
) -> Result<(Vec<Value>, bool), redis::RedisError>
where
    C: ConnectionLike + Send,
{
    if !d.wanted() {
        return Ok((pipe.query_async(con).await?, true));
    }
    pipe.ignore_errors();
    d.push_wait(&mut pipe, probe);
    let mut all: Vec<redis::RedisResult<Value>> = pipe.query_async(con).await?;
    let wait = all.pop();
    let probe_reply = all.pop();
    let writes = all.into_iter().collect::<Result<Vec<Value>, _>>()?;
    Ok((writes, d.judge_tail(probe_reply, wait)))
}

/// Waits, on one connection, until everything the primary has applied so far is durable (a probe
/// write, then the wait): for records found in the ledger whose own write was not confirmed.
pub async fn now<C>(con: &mut C, d: &Durability, probe: &str) -> Result<bool, redis::RedisError>
where
    C: ConnectionLike + Send,
{
    if !d.wanted() {
        return Ok(true);
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    d.push_wait(&mut pipe, probe);
    let mut all: Vec<redis::RedisResult<Value>> = pipe.query_async(con).await?;
    let wait = all.pop();
    Ok(d.judge_tail(all.pop(), wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_answer_counts_only_when_it_reaches_what_was_asked() {
        let reps = Durability { local_aof: false, replicas: 2, timeout_ms: 10 };
        assert!(reps.judge(&Value::Int(2)));
        assert!(!reps.judge(&Value::Int(1)));
        assert!(!reps.judge(&Value::Nil));
        let aof = Durability { local_aof: true, replicas: 1, timeout_ms: 10 };
        assert!(aof.judge(&Value::Array(vec![Value::Int(1), Value::Int(1)])));
        assert!(!aof.judge(&Value::Array(vec![Value::Int(0), Value::Int(1)])));
        assert!(!aof.judge(&Value::Array(vec![Value::Int(1), Value::Int(0)])));
        assert!(!aof.judge(&Value::Int(1)));
        assert!(Durability::none().judge(&Value::Nil));
    }
}
