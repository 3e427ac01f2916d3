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

    /// Appends the wait to `pipe` (after the write it must vouch for).
    pub fn push_wait(&self, pipe: &mut redis::Pipeline) {
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
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Runs a script and, on the same connection in the same pipeline, waits for `d`. Returns the
/// script's answer and whether it is durable. Without anything to wait for it is a plain call.
pub async fn invoke<T, C>(
    con: &mut C,
    inv: &ScriptInvocation<'_>,
    d: &Durability,
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
        pipe.invoke_script(inv);
        d.push_wait(&mut pipe);
        match pipe.query_async::<(T, Value)>(con).await {
            Ok((answer, waited)) => return Ok((answer, d.judge(&waited))),
            Err(e) if attempt == 0 && is_noscript(&e) => {
                inv.load_async(con).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(redis::RedisError::from((redis::ErrorKind::Io, "script could not be loaded")))
}

/// Runs a prepared pipeline of writes and, in the same pipeline, waits for `d`. The wait's answer
/// is the last value; it is taken off and judged.
pub async fn query_pipeline<C>(
    con: &mut C,
    mut pipe: redis::Pipeline,
    d: &Durability,
) -> Result<(Vec<Value>, bool), redis::RedisError>
where
    C: ConnectionLike + Send,
{
    if !d.wanted() {
        return Ok((pipe.query_async(con).await?, true));
    }
    d.push_wait(&mut pipe);
    let mut all: Vec<Value> = pipe.query_async(con).await?;
    let waited = all.pop().unwrap_or(Value::Nil);
    Ok((all, d.judge(&waited)))
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
