-- defer: move a refund's next step later without a transition (rate limit, missing credentials).
-- Only while nobody holds it and it is still in the expected state. A refund deferred past its
-- maximum age goes to needs_review instead, so nothing waits unseen for ever.
-- A: `DeferArgs` (transition.rs).
-- Returns: {'ok'} | {'stale'} | {'review'} | {'failed'} (a fresh refund whose paid amount disagrees)
local cur = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'created_at', 'retried_at', 'fresh')
local now = A.now
if cur[1] ~= A.expected or (tonumber(cur[2]) or 0) > now then return {'stale'} end
-- A fresh refund deferred by name (rare: claims defer those they take) is settled as a claim
-- would settle it, and leaves the ready list: it is in the due-index from now on.
if cur[5] and cur[5] ~= '' then
  leave_ready(A.id)
  local f = redis.call('HMGET', KEYS[1], 'syssn', 'orig_txamt')
  local recorded = settle_fresh(A.id, {fresh = cur[5], created_at = cur[3], syssn = f[1], orig = f[2]})
  if recorded then
    fail_unsent(A.id, cur[1], paid_disagrees(f[2], recorded, f[1]), now, A.maxlen)
    return {'failed'}
  end
end
-- Deferred while 'submitting' (its holder vanished): it may have been sent.
if cur[1] == 'submitting' then redis.call('HSET', KEYS[1], 'uncertain', 1) end
if now - math.max(tonumber(cur[3]) or now, tonumber(cur[4]) or 0) >= A.max_age then
  review(A.id, cur[1], 'max age reached while waiting: ' .. A.reason, now, A.maxlen)
  return {'review'}
end
redis.call('HSET', KEYS[1], 'next_at', A.next_at, 'reason', short(A.reason))
redis.call('ZADD', KEYS[2], A.next_at, A.id)
return {'ok'}
