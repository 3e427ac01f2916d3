-- transition: apply a worker's decision, if the worker still holds the refund.
-- Guarantees: compare-and-set on (state, fence): a stalled worker whose lease was taken over
-- writes nothing. Final states are never left. The due-index, the state indexes, the payment's
-- accounting, the merchant's pause and the outcome stream change with the record, atomically.
-- Idempotent: a retry of the same operation (op id) after a lost reply changes nothing again.
-- The lease owner is compared as well as the fence: fences grow with the server's clock, so after a
-- failover to a node whose clock is behind, a rolled-back record could hand an equal fence to a
-- second worker; the owner tells the two apart.
-- A: `TransitionArgs` (transition.rs); the decision's field/value pairs follow, from ARGV[A_REST].
-- KEYS[16]: the audit stream (a merchant this pauses is audited).
-- Returns: {'ok'} | {'stale', state, fence} | {'illegal', from, to} (a move State::EDGES forbids)
local otn, expected, fence, new = A.id, A.expected, A.fence, A.new_state
local next_at, now = A.next_at, A.now
-- One read serves the checks and the outcome-stream entry.
local cur = redis.call('HMGET', KEYS[1], 'state', 'fence', 'txamt', 'last_op', 'lease_owner', 'out_trade_no', 'syssn',
  'merchant', 'respcd', 'resperr', 'refund_syssn', 'submits', 'enquiries')
if cur[4] == A.op then return {'ok'} end
if cur[1] ~= expected or cur[2] ~= fence or cur[5] ~= A.lease_owner or FINAL[cur[1]] then
  return {'stale', cur[1] or '', cur[2] or ''}
end
-- EDGE is State::EDGES (Rust), put in front of this script when it is built.
if not EDGE[expected .. '>' .. new] then return {'illegal', expected, new} end
local stored_next = math.max(next_at, 0)
-- The lease is given up by emptying it in the same HSET (an empty field reads as absent).
write_fields(A_REST, {'last_op', A.op, 'reason', A.reason, 'updated_at', now, 'next_at', stored_next, 'state', new,
  'lease_owner', '', 'lease_until', 0})
if next_at >= 0 then
  redis.call('ZADD', KEYS[2], next_at, otn)
else
  redis.call('ZREM', KEYS[2], otn)
end
if A.pause ~= '' and redis.call('HSET', KEYS[5], A.pause, A.reason) == 1 then
  -- A newly paused merchant is in the audit trail (KEYS[16]) like an operator's pause.
  redis.call('XADD', KEYS[16], '*', 'out_trade_no', cur[6], 'merchant', A.pause, 'action', 'pause',
    'who', 'worker ' .. A.lease_owner, 'why', A.reason, 'from', 'running', 'to', 'paused', 'outcome', 'ok', 'at', now)
end
settle_payment(otn, new, tonumber(cur[3]) or 0)
move_index(otn, expected, new, now)
local f = {out_trade_no = cur[6], syssn = cur[7], txamt = cur[3], merchant = cur[8], respcd = cur[9] or nil,
  resperr = cur[10] or nil, refund_syssn = cur[11] or nil, submits = cur[12] or nil, enquiries = cur[13] or nil,
  fence = cur[2], state = new, reason = A.reason, next_at = tostring(stored_next)}
-- The decision's own fields, as write_fields wrote them (an empty value clears the field).
for i = A_REST, #ARGV, 2 do
  if IS_EVENT_FIELD[ARGV[i]] or ARGV[i] == 'last_error' then f[ARGV[i]] = ARGV[i + 1] ~= '' and ARGV[i + 1] or nil end
end
emit_from(f, expected, now, A.maxlen)
return {'ok'}
