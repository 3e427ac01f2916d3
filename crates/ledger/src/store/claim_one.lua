-- claim_one: the claim of one refund, shared by `claim` (one named refund) and `claim_due` (the
-- due refunds, K at a time). It takes the lease on a refund that is due and says what to do.
-- Guarantees: at most one live lease per refund; every claim takes a new fence (see next_fence), so
-- writes from an earlier holder are refused. 'submitting' is persisted (with txdtm and the submit
-- counted) BEFORE the caller sends anything. A record found in 'submitting' (its holder died or
-- stalled) becomes 'pending' and is enquired, never resent. One refund in flight per payment; a
-- refund that would take a payment's refunds past what was paid fails here and is never sent.
-- Paused merchants, a busy payment, the nightly window and a merchant this worker has no
-- credentials for defer it; a refund deferred past its maximum age goes to needs_review. It takes
-- the merchant's rate-limit token only when a request will be sent.
--
-- A fresh refund (fresh.lua) is settled first: one whose paid amount disagrees with the one
-- recorded for its payment fails here, never sent.
-- Works on R (the record) and P (its payment), which the caller points at the refund; KEYS[2] is
-- the due-index, KEYS[5] the paused merchants; `rate_key` the merchant's token bucket. With
-- `derive` ({payment = prefix, rate = prefix}), P and the bucket are derived from the record's own
-- syssn and merchant instead (claim_due: one read of the record serves both). `otn` is the
-- refund's id in the shard (see refund::placement). Returns the answer, then the record's syssn,
-- merchant and out_trade_no.
-- A: the named arguments (see `ClaimArgs` in claim.rs, which writes them and the prelude that
-- names them). `served`: the merchants this worker holds credentials for (nil: not checked).
-- Returns {kind, ...} where kind is one of (typed on the Rust side, see `Claim`):
--   missing | final state | review | leased until | early next_at | need_paid | failed why
--   | blocked why | deferred why next_at cause | submit fence field value ... | enquire fence ...
--   | recover fence ... (an enquiry of a refund found in 'submitting')
-- cause: rate_limit | paused | quiet_window | payment_busy | paid_unknown | no_credentials
-- The decision on a record already read (`rec`, the HMGET in claim_one).
local function decide_claim(otn, A, rate_key, served, rec)
  local now, state = A.now, rec[1]
  if FINAL[state] then return {'final', state} end
  if state == 'needs_review' then return {'review'} end
  -- Never sent, it fails here (a refund it would take past what was paid, one whose paid amount
  -- disagrees with its payment's).
  local function fail(why)
    fail_unsent(otn, state, why, now, A.maxlen)
    return {'failed', why}
  end
  -- A fresh refund (fresh.lua) is settled by the first claim that looks at it, whatever that
  -- claim then does: a fresh refund is only ever on the ready list.
  if rec[14] and rec[14] ~= '' then
    local recorded = settle_fresh(otn, {fresh = rec[14], created_at = rec[9], syssn = rec[5], orig = rec[15]})
    if recorded then return fail(paid_disagrees(rec[15], recorded, rec[5])) end
  end
  -- Not ours yet: put the refund back in the due-index at its real time, so an early or
  -- duplicate claim never delays it.
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

  -- Its holder's lease ran out while it was 'submitting': the request may have reached QFPay.
  -- Whatever this claim does with it (enquire, defer, review), it is 'uncertain' from now on, so
  -- that no later refusal reads as a failure without an enquiry.
  if state == 'submitting' then redis.call('HSET', R, 'uncertain', 1) end

  local merchant = rec[4]
  local age_from = math.max(tonumber(rec[9]) or now, tonumber(rec[10]) or 0)
  local too_old = now - age_from >= A.max_age
  local function defer(cause, why, at)
    if too_old then
      why = 'max age reached while waiting: ' .. why
      review(otn, state, why, now, A.maxlen)
      return {'blocked', why}
    end
    redis.call('HSET', R, 'next_at', at, 'reason', short(why))
    redis.call('ZADD', KEYS[2], at, otn)
    return {'deferred', why, tostring(at), cause}
  end
  if served and not served[merchant] then
    return defer('no_credentials', 'no credentials for merchant "' .. merchant .. '" on this worker',
      now + A.paused_wait)
  end

  -- 0 when a token was taken (or there is no limit), else the ms until there is one.
  local function token_wait()
    if A.rate <= 0 then return 0 end
    return take_token(rate_key, A.rate, A.burst, now)
  end
  local function rate_limited(wait)
    return defer('rate_limit', 'rate limit of merchant ' .. merchant, now + wait)
  end

  local fence = next_fence(rec[7])
  -- `extra`: more field/value pairs to write with the lease, in the same HSET.
  -- One HSET (the new state included), then the record read back once: it is both the answer
  -- and the outcome-stream entry.
  local function take_lease(new_state, answer, extra)
    local set = {'fence', fence, 'lease_owner', A.worker, 'lease_until', now + A.lease, 'next_at', now + A.lease,
      'updated_at', now, 'due_at', next_at, 'state', new_state}
    for _, v in ipairs(extra) do set[#set + 1] = v end
    redis.call('HSET', R, unpack(set))
    redis.call('ZADD', KEYS[2], now + A.lease, otn)
    local all = redis.call('HGETALL', R)
    if new_state ~= state then
      move_index(otn, state, new_state, now)
      local f = {}
      for i = 1, #all, 2 do f[all[i]] = all[i + 1] end
      emit_from(f, state, now, A.maxlen)
    end
    local out = {answer, fence}
    for _, v in ipairs(all) do out[#out + 1] = v end
    return out
  end

  if state == 'submitting' or state == 'pending' then
    local wait = token_wait()
    if wait > 0 then return rate_limited(wait) end
    local extra = {'enquiries', (tonumber(rec[11]) or 0) + 1}
    if state == 'submitting' then
      extra[3], extra[4] = 'reason', 'lease expired in submitting: enquiring, never resending'
      return take_lease('pending', 'recover', extra)
    end
    return take_lease('pending', 'enquire', extra)
  end

  -- queued or retry_wait: a submit.
  local txamt = tonumber(rec[6])
  local paused = paused_reason(merchant)
  if paused then return defer('paused', 'merchant ' .. merchant .. ' paused: ' .. paused, now + A.paused_wait) end
  if A.not_before > now then
    return defer('quiet_window', 'QFPay refuses refunds 23:30-00:30 (UTC+8): deferred to 00:35', A.not_before)
  end
  local pay = redis.call('HMGET', P, 'inflight', 'paid', 'committed')
  local inflight, paid = pay[1] or nil, pay[2] or nil
  if inflight and inflight ~= otn then
    return defer('payment_busy', 'waiting for refund ' .. inflight .. ' of the same payment', now + A.busy_wait)
  end
  if not paid and A.want_paid then
    -- Learning the amount is waiting too: the maximum age applies.
    if too_old then return defer('paid_unknown', 'the payment amount is still unknown', now) end
    -- The caller will enquire the payment first: that request takes a token too.
    local wait = token_wait()
    if wait > 0 then return rate_limited(wait) end
    return {'need_paid'}
  end
  if paid and not inflight then
    local committed = tonumber(pay[3]) or 0
    if committed + txamt > tonumber(paid) then
      return fail('would refund ' .. (committed + txamt) .. ' of a payment of ' .. paid .. ' (' .. committed ..
        ' already refunded): never sent')
    end
  end
  local wait = token_wait()
  if wait > 0 then return rate_limited(wait) end
  redis.call('HSET', P, 'inflight', otn)
  local extra = {'submits', (tonumber(rec[12]) or 0) + 1, 'last_submit_at', now, 'not_found', 0}
  local txdtm = rec[8]
  if not txdtm or txdtm == '' then
    extra[7], extra[8], extra[9], extra[10] = 'txdtm', A.txdtm, 'submitted_at', now
  end
  return take_lease('submitting', 'submit', extra)
end

local function claim_one(otn, A, rate_key, served, derive)
  local rec = redis.call('HMGET', R, 'state', 'lease_until', 'next_at', 'merchant', 'syssn', 'txamt', 'fence',
    'txdtm', 'created_at', 'retried_at', 'enquiries', 'submits', 'out_trade_no', 'fresh', 'orig_txamt')
  if not rec[1] then return {'missing'} end
  -- A record this claim cannot read safely goes to a person, visibly, instead of failing the
  -- whole batch (and every later fetch) at the head of the due-index.
  local broken = (not rec[4] and 'merchant') or (not rec[5] and 'syssn') or (not tonumber(rec[6]) and 'txamt')
  if broken then
    local why = 'corrupt record: ' .. broken .. ' missing or not a number'
    if not FINAL[rec[1]] and rec[1] ~= 'needs_review' then review(otn, rec[1], why, A.now, A.maxlen) end
    redis.call('ZREM', KEYS[2], otn)
    return {'broken', why}, rec[5] or nil, rec[4] or nil, rec[13] or nil
  end
  if derive then
    P = derive.payment .. rec[5]
    rate_key = derive.rate .. rec[4]
  end
  return decide_claim(otn, A, rate_key, served, rec), rec[5], rec[4], rec[13]
end

-- The set of merchants named in A.served ('\n'-separated; '' = not checked).
local function served_set(list)
  if list == nil or list == '' then return nil end
  local set = {}
  for m in string.gmatch(list, '[^\n]+') do set[m] = true end
  return set
end
