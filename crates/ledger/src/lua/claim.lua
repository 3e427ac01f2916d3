-- claim: take the lease on a refund that is due, and say what to do with it.
-- Guarantees: at most one live lease per refund; every claim takes a new fence (see next_fence), so
-- writes from an earlier holder are refused. 'submitting' is persisted (with txdtm and the submit
-- counted) BEFORE the caller sends anything. A record found in 'submitting' (its holder died or
-- stalled) becomes 'pending' and is enquired, never resent. One refund in flight per payment; a
-- refund that would take a payment's refunds past what was paid fails here and is never sent.
-- Paused merchants, a busy payment and the nightly window defer a submit; a refund deferred past
-- its maximum age goes to needs_review. The claimed record is returned as the caller must use it.
-- It reads the record itself and takes the merchant's rate-limit token only when a request will be
-- sent, so the whole step before the call to QFPay is this one round trip. The caller names the
-- refund's payment and merchant (from the job) so that every key is declared; a record that does
-- not match them answers 'mismatch' and nothing is written.
-- ARGV: 1 out_trade_no, 2 now ms, 3 worker id, 4 lease ms, 5 txdtm for a first submit,
--       6 payment-busy wait ms, 7 paused wait ms, 8 stream maxlen, 9 '1' = return need_paid when
--       the payment's amount is unknown, 10 no submit before (ms, 0 = none), 11 max age ms,
--       12 syssn and 13 merchant the caller expects, 14 rate per second ('' = no limit), 15 burst
-- KEYS[15] the merchant's token bucket.
-- Returns: {'missing'} | {'mismatch'} | {'final', state} | {'review'} | {'leased', until} | {'early', next_at}
--        | {'deferred', why, next_at, cause} | {'need_paid'} | {'failed', why} | {'blocked', why}
--        | {'submit', fence, field, value, ...} | {'enquire', fence, field, value, ...}
--        | {'recover', fence, field, value, ...} (an enquiry of a refund found in 'submitting')
-- cause: rate_limit | paused | quiet_window | payment_busy | paid_unknown (typed on the Rust side:
-- nothing there reads the words of `why`).
local otn, now, worker, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'next_at', 'merchant', 'syssn', 'txamt', 'fence',
  'txdtm', 'created_at', 'retried_at', 'enquiries', 'submits')
local state = rec[1]
if not state then return {'missing'} end
if rec[5] ~= ARGV[12] or rec[4] ~= ARGV[13] then return {'mismatch'} end
if FINAL[state] then return {'final', state} end
if state == 'needs_review' then return {'review'} end
-- Not ours yet: put the refund back in the due-index at its real time (a feed may have parked it
-- later), so an early or duplicate delivery never delays it.
local lease_until = tonumber(rec[2]) or 0
if lease_until > now then
  redis.call('ZADD', KEYS[2], lease_until, otn)
  return {'leased', tostring(lease_until)}
end
local next_at = tonumber(rec[3]) or 0
if next_at > now then
  redis.call('ZADD', KEYS[2], next_at, otn)
  return {'early', tostring(next_at)}
end

-- Its holder's lease ran out while it was 'submitting': the request may have reached QFPay. Whatever
-- this claim does with it (enquire, defer, review), it is 'uncertain' from now on, so that no
-- later refusal reads as a failure without an enquiry.
if state == 'submitting' then redis.call('HSET', KEYS[1], 'uncertain', 1) end

local age_from = math.max(tonumber(rec[9]) or now, tonumber(rec[10]) or 0)
local too_old = now - age_from >= tonumber(ARGV[11])
local function defer(cause, why, at)
  if too_old then
    why = 'max age reached while waiting: ' .. why
    review(otn, state, why, now, ARGV[8])
    return {'blocked', why}
  end
  redis.call('HSET', KEYS[1], 'next_at', at, 'reason', why)
  redis.call('ZADD', KEYS[2], at, otn)
  return {'deferred', why, tostring(at), cause}
end

-- 0 when a token was taken (or there is no limit), else the ms until there is one.
local function token_wait()
  if ARGV[14] == '' then return 0 end
  return take_token(KEYS[15], tonumber(ARGV[14]), tonumber(ARGV[15]), now)
end
local function rate_limited(wait)
  return defer('rate_limit', 'rate limit of merchant ' .. rec[4], now + wait)
end

local fence = next_fence(rec[7])
-- `extra`: more field/value pairs to write with the lease, in the same HSET.
local function take_lease(new_state, answer, extra)
  local set = {'fence', fence, 'lease_owner', worker, 'lease_until', now + lease, 'next_at', now + lease,
    'updated_at', now, 'due_at', next_at}
  for _, v in ipairs(extra) do set[#set + 1] = v end
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('ZADD', KEYS[2], now + lease, otn)
  if new_state ~= state then
    set_state(otn, state, new_state, now)
    emit(state, now, ARGV[8])
  end
  local out = {answer, fence}
  for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
  return out
end

if state == 'submitting' or state == 'pending' then
  local wait = token_wait()
  if wait > 0 then return rate_limited(wait) end
  local extra = {'enquiries', (tonumber(rec[11]) or 0) + 1}
  if state == 'submitting' then
    extra[3], extra[4] = 'reason', 'found in submitting after its lease expired: enquiring, never resending'
    return take_lease('pending', 'recover', extra)
  end
  return take_lease('pending', 'enquire', extra)
end

-- queued or retry_wait: a submit.
local merchant, txamt = rec[4], tonumber(rec[6])
local paused = redis.call('HGET', KEYS[5], merchant)
if paused then return defer('paused', 'merchant ' .. merchant .. ' paused: ' .. paused, now + tonumber(ARGV[7])) end
local not_before = tonumber(ARGV[10])
if not_before > now then
  return defer('quiet_window', 'QFPay refuses refunds 23:30-00:30 (UTC+8): deferred to 00:35', not_before)
end
local inflight = redis.call('HGET', KEYS[4], 'inflight')
if inflight and inflight ~= otn then
  return defer('payment_busy', 'waiting for refund ' .. inflight .. ' of the same payment', now + tonumber(ARGV[6]))
end
local paid = redis.call('HGET', KEYS[4], 'paid')
if not paid and ARGV[9] == '1' then
  -- Learning the amount is waiting too: the maximum age applies.
  if too_old then return defer('paid_unknown', 'the payment amount is still unknown', now) end
  -- The caller will enquire the payment first: that request takes a token too.
  local wait = token_wait()
  if wait > 0 then return rate_limited(wait) end
  return {'need_paid'}
end
if paid and not inflight then
  local committed = hget_num(KEYS[4], 'committed')
  if committed + txamt > tonumber(paid) then
    local why = 'would refund ' .. (committed + txamt) .. ' of a payment of ' .. paid .. ' (' .. committed ..
      ' already refunded): never sent'
    redis.call('HSET', KEYS[1], 'reason', why, 'updated_at', now, 'next_at', 0)
    redis.call('ZREM', KEYS[2], otn)
    set_state(otn, state, 'failed', now)
    emit(state, now, ARGV[8])
    return {'failed', why}
  end
end
local wait = token_wait()
if wait > 0 then return rate_limited(wait) end
redis.call('HSET', KEYS[4], 'inflight', otn)
local extra = {'submits', (tonumber(rec[12]) or 0) + 1, 'last_submit_at', now, 'not_found', 0}
local txdtm = rec[8]
if not txdtm or txdtm == '' then
  extra[7], extra[8], extra[9], extra[10] = 'txdtm', ARGV[5], 'submitted_at', now
end
return take_lease('submitting', 'submit', extra)
