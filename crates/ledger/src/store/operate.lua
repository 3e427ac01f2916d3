-- operate: what an operator may do to a refund, audited.
--   retry:   needs_review -> pending (if it was ever sent: enquire first, never resend blindly)
--            or queued (never sent); counters for not-found and retries start over.
--   resolve: needs_review -> succeeded | failed, as the operator established with QFPay; a resolved
--            success counts against the payment's paid amount like any other. A success is refused
--            for a refund never sent, and for one that would take the payment past what was paid
--            (unless forced: a person holding QFPay's proof; audited as forced).
--   cancel:  queued (never sent) -> cancelled.
--   enquire: pending -> pending, due now ("enquire now"): only brings its next enquiry forward,
--            so it is always safe; its lease (a worker enquiring it now) and its last answer stay.
--            The wait it cuts short is kept as resend_not_before: a "not found" that leads to a
--            resend still resends only when that wait would have ended (a retryable code's hold).
-- Every action records who and why on the record, in the outcome stream and in the audit stream
-- (KEYS[16], trimmed only after the archive holds it: see store/trim.rs). A refused action
-- is audited too.
-- A: `OperateArgs` (operator.rs): id, out_trade_no, merchant, action, target state (resolve), who, why, now,
--    maxlen, force (a resolve past the paid amount).
-- Returns: {'ok', new_state} | {'refused', why}
-- (`otn` is the refund's id in the shard, see refund::placement.)
local otn, action, target, who, why, now = A.id, A.action, A.target, A.who, A.why, A.now
local cur = redis.call('HMGET', KEYS[1], 'state', 'submits', 'txamt', 'fresh')
local state = cur[1]
local forced = A.force
local shown = action
if forced then shown = action .. ' --force' end
local note = shown .. ' by ' .. who .. ': ' .. why
local function audit(outcome, new_state)
  redis.call('XADD', KEYS[16], '*', 'out_trade_no', A.out_trade_no, 'merchant', A.merchant, 'action', shown, 'who', who, 'why', why,
    'from', state or '', 'to', new_state or '', 'outcome', outcome, 'at', tostring(now))
end
local function refuse(msg)
  audit('refused: ' .. msg, nil)
  return {'refused', msg}
end
if not state then return {'missing'} end
if why == '' then return refuse('a reason is required') end
local new
if action == 'enquire' then
  if state ~= 'pending' then
    return refuse('only a refund waiting for an enquiry (pending) can be enquired now (it is ' .. state .. ')')
  end
  local was = tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0') or 0
  local held = tonumber(redis.call('HGET', KEYS[1], 'resend_not_before') or '0') or 0
  if was > now and was > held then redis.call('HSET', KEYS[1], 'resend_not_before', was) end
  redis.call('HSET', KEYS[1], 'next_at', now, 'operator', who)
  redis.call('ZADD', KEYS[2], now, otn)
  audit('ok', state)
  return {'ok', state}
elseif action == 'retry' then
  if state ~= 'needs_review' then return refuse('only a refund in needs_review can be retried (it is ' .. state .. ')') end
  if (tonumber(cur[2]) or 0) > 0 then
    -- Sent at least once: it may have taken effect, so it is enquired and never failed unseen.
    new = 'pending'
    redis.call('HSET', KEYS[1], 'uncertain', 1)
  else
    new = 'queued'
  end
  -- The maximum age counts again from now (retried_at), the creation time stays as it was.
  redis.call('HSET', KEYS[1], 'not_found', 0, 'retries', 0, 'next_at', now, 'retried_at', now)
  redis.call('ZADD', KEYS[2], now, otn)
elseif action == 'resolve' then
  if state ~= 'needs_review' then return refuse('only a refund in needs_review can be resolved (it is ' .. state .. ')') end
  if target ~= 'succeeded' and target ~= 'failed' then return refuse('resolve to succeeded or failed') end
  if target == 'succeeded' then
    if (tonumber(cur[2]) or 0) == 0 then
      return refuse('it was never sent to QFPay (0 submits): a refund never sent cannot have succeeded')
    end
    local paid = redis.call('HGET', KEYS[4], 'paid')
    local total = hget_num(KEYS[4], 'committed') + (tonumber(cur[3]) or 0)
    if paid and total > tonumber(paid) and not forced then
      return refuse('a success would take payment refunds to ' .. total .. ' of ' .. paid ..
        ' paid; force it only with QFPay\'s proof that it succeeded')
    end
  end
  new = target
  redis.call('HSET', KEYS[1], 'next_at', 0)
  redis.call('ZREM', KEYS[2], otn)
  settle_payment(otn, new, tonumber(cur[3]) or 0)
elseif action == 'cancel' then
  if state ~= 'queued' then return refuse('only a refund never sent (queued) can be cancelled (it is ' .. state .. ')') end
  new = 'cancelled'
  redis.call('HSET', KEYS[1], 'next_at', 0)
  redis.call('ZREM', KEYS[2], otn)
  if cur[4] and cur[4] ~= '' then leave_ready(otn) end
  if redis.call('HGET', KEYS[4], 'inflight') == otn then redis.call('HDEL', KEYS[4], 'inflight') end
else
  return refuse('unknown action ' .. action)
end
redis.call('HSET', KEYS[1], 'reason', capped('reason', note), 'updated_at', now, 'operator', who)
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until')
set_state(otn, state, new, now)
emit(state, now, A.maxlen)
audit('ok', new)
return {'ok', new}
