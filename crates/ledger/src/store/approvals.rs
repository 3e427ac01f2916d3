//! Four-eyes approvals: an action one operator may not take alone (resolving a refund as
//! succeeded — a claim about money —, a bulk action above the amount one operator may move) is
//! kept as a request until a second operator approves or rejects it. The ledger keeps the
//! requests (under its own tag, one hash: a field per request, JSON) and decides atomically who
//! may approve: someone other than the requester, once. What an approved request does is the
//! caller's (the API carries it out and records the result here).

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::store::Ledger;
use crate::store::keys::Keys;

/// How long a request waits for its second operator.
pub const APPROVAL_TTL_MS: i64 = 24 * 3_600_000;
/// How long a decided request stays listed.
const KEEP_DECIDED_MS: i64 = 30 * 24 * 3_600_000;

/// One request for a second operator's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    pub id: String,
    /// `resolve` or `bulk`.
    pub kind: String,
    /// What was asked, as the API took it (the refunds named, the action, the target state).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub request: serde_json::Value,
    /// Amounts it concerns, summed (minor units).
    pub txamt: u64,
    pub requested_by: String,
    pub reason: String,
    pub requested_at: i64,
    /// `pending`, `approving` (approved, being carried out), `done`, `rejected`, `expired`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<i64>,
    /// What carrying it out did.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub result: Option<serde_json::Value>,
}

/// Why an approval could not be given or refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRefusal {
    #[error("no approval request {0:?}")]
    NoSuchRequest(String),
    #[error("{0}")]
    Refused(String),
}

/// How long after approving it its approver may carry out a request again whose carrying out
/// was cut short (a timeout, Redis away): every action it carries refuses what was already done.
pub const RESUME_MS: i64 = 600_000;

/// Decides a request atomically: KEYS[1] the approvals hash; ARGV: id, who, why, now, verdict
/// (`approve` | `reject`), the request's time to live, RESUME_MS. A request may be approved by
/// anyone but its requester (names compared without case), once, while pending; only its
/// approver may carry it out again, for RESUME_MS, while it is `approving`; it is expired past
/// its time.
const DECIDE: &str = r#"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'missing'} end
local a = cjson.decode(raw)
local now = tonumber(ARGV[4])
if a.status == 'pending' and now > a.requested_at + tonumber(ARGV[6]) then
  a.status = 'expired'
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(a))
end
local resuming = a.status == 'approving' and ARGV[5] == 'approve'
if resuming then
  if string.lower(a.decided_by or '') ~= string.lower(ARGV[2]) or now > (tonumber(a.decided_at) or 0) + tonumber(ARGV[7]) then
    return {'refused', 'request ' .. ARGV[1] .. ' is being carried out by ' .. tostring(a.decided_by)}
  end
  return {'ok', raw}
end
if a.status ~= 'pending' then
  return {'refused', 'request ' .. ARGV[1] .. ' is ' .. a.status}
end
if string.lower(a.requested_by) == string.lower(ARGV[2]) then
  return {'refused', 'a request needs a second operator: ' .. ARGV[2] .. ' asked for it'}
end
a.status = (ARGV[5] == 'approve') and 'approving' or 'rejected'
a.decided_by = ARGV[2]
a.decision_reason = ARGV[3]
a.decided_at = now
local out = cjson.encode(a)
redis.call('HSET', KEYS[1], ARGV[1], out)
return {'ok', out}
"#;

impl Ledger {
    fn approvals_key(&self) -> String {
        format!("{}:approvals", Keys::new(&self.config.namespace, &self.config.tag).prefix())
    }

    /// Records a request for a second operator's approval; returns it (with its id).
    pub async fn request_approval(
        &self,
        kind: &str,
        request: serde_json::Value,
        txamt: u64,
        who: &str,
        why: &str,
    ) -> Result<Approval, LedgerError> {
        let key = self.approvals_key();
        let seq: u64 = self.con.clone().hincr(&key, "#seq", 1).await?;
        let now = self.now_ms();
        let a = Approval {
            id: format!("A{seq}"),
            kind: kind.to_owned(),
            request,
            txamt,
            requested_by: who.to_owned(),
            reason: why.to_owned(),
            requested_at: now,
            status: "pending".into(),
            decided_by: None,
            decision_reason: None,
            decided_at: None,
            result: None,
        };
        let json = serde_json::to_string(&a).map_err(|e| LedgerError::Script(e.to_string()))?;
        let _: () = self.con.clone().hset(&key, &a.id, json).await?;
        Ok(a)
    }

    /// Every request still listed (newest first); decided ones go after 30 days.
    pub async fn approvals(&self) -> Result<Vec<Approval>, LedgerError> {
        let key = self.approvals_key();
        let all: std::collections::HashMap<String, String> = self.con.clone().hgetall(&key).await?;
        let now = self.now_ms();
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, raw) in all.into_iter().filter(|(id, _)| !id.starts_with('#')) {
            let Ok(mut a) = serde_json::from_str::<Approval>(&raw) else {
                tracing::warn!(id = %id, "an approval request that does not read: left as it is");
                continue;
            };
            if a.status == "pending" && now > a.requested_at + APPROVAL_TTL_MS {
                a.status = "expired".into();
            }
            let decided = a.decided_at.unwrap_or(a.requested_at + APPROVAL_TTL_MS);
            if a.status != "pending" && a.status != "approving" && now > decided + KEEP_DECIDED_MS {
                gone.push(id);
                continue;
            }
            out.push(a);
        }
        if !gone.is_empty() {
            let _: () = self.con.clone().hdel(&key, gone).await?;
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.requested_at));
        Ok(out)
    }

    /// `who` approves (`approve`) or rejects request `id`; returns it as decided. An approved
    /// request is `approving` until [`Ledger::finish_approval`] records what it did.
    pub async fn decide_approval(
        &self,
        id: &str,
        who: &str,
        why: &str,
        approve: bool,
    ) -> Result<Result<Approval, ApprovalRefusal>, LedgerError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| redis::Script::new(DECIDE));
        let reply: Vec<String> = SCRIPT
            .key(self.approvals_key())
            .arg(id)
            .arg(who)
            .arg(why)
            .arg(self.now_ms())
            .arg(if approve { "approve" } else { "reject" })
            .arg(APPROVAL_TTL_MS)
            .arg(RESUME_MS)
            .invoke_async(&mut self.con.clone())
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let raw = reply.get(1).ok_or_else(|| LedgerError::Script("decide: no request in the reply".into()))?;
                Ok(Ok(serde_json::from_str(raw).map_err(|e| LedgerError::Script(e.to_string()))?))
            }
            Some("missing") => Ok(Err(ApprovalRefusal::NoSuchRequest(id.to_owned()))),
            _ => Ok(Err(ApprovalRefusal::Refused(reply.get(1).cloned().unwrap_or_default()))),
        }
    }

    /// Records what carrying out approved request `a` did: it is `done`.
    /// Only while it is still `approving` by the same approver (a compare-and-set: a second
    /// run's result never hides the first's).
    pub async fn finish_approval(&self, a: &Approval, result: serde_json::Value) -> Result<Approval, LedgerError> {
        static FINISH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local raw = redis.call('HGET', KEYS[1], ARGV[1])
                 if not raw then return 0 end
                 local a = cjson.decode(raw)
                 if a.status ~= 'approving' or a.decided_by ~= ARGV[2] then return 0 end
                 redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
                 return 1",
            )
        });
        let done = Approval { status: "done".into(), result: Some(result), ..a.clone() };
        let json = serde_json::to_string(&done).map_err(|e| LedgerError::Script(e.to_string()))?;
        let set: i64 = FINISH
            .key(self.approvals_key())
            .arg(&done.id)
            .arg(done.decided_by.as_deref().unwrap_or(""))
            .arg(json)
            .invoke_async(&mut self.con.clone())
            .await?;
        if set == 0 {
            tracing::warn!(id = %done.id, "an approval request was finished by another run meanwhile: its result kept");
        }
        Ok(done)
    }
}
