-- Shared prelude of every ledger script (concatenated in front of each one at build time).
--
-- Every script receives the same KEYS, all under its shard's {hash tag}, so Redis Cluster routes them
-- together and no script touches an undeclared key:
--   KEYS[1] the refund record (hash)       KEYS[2] the due-index (zset: out_trade_no -> next_at ms)
--   KEYS[3] the outcome stream             KEYS[4] the payment (hash: paid, committed, inflight)
--   KEYS[5] paused merchants (hash)        KEYS[6..13] one zset per state, in State::ALL order
--   KEYS[14] every refund by creation time (zset), for reports over a time window
--   KEYS[15] the ready list: refunds enqueued fresh (see fresh.lua), due at once, in order
local STATES = {'queued', 'submitting', 'pending', 'retry_wait', 'succeeded', 'failed', 'needs_review', 'cancelled'}
local STATE_KEY = {}
for i, s in ipairs(STATES) do STATE_KEY[s] = KEYS[5 + i] end
local FINAL = {succeeded = true, failed = true, cancelled = true}
-- The record and payment the helpers below work on: KEYS[1] and KEYS[4], except in scripts that
-- handle several refunds in one call (enqueue_many), which point them at each refund in turn.
local R, P = KEYS[1], KEYS[4]
local READY = KEYS[15]
-- What a refund leaving 'queued' for the first time still owes its indexes (fresh.lua sets it,
-- in the scripts that can move a refund out of 'queued').
local SETTLE = nil

-- Long texts stay out of the record: one hash field over 64 bytes (Redis' hash-max-listpack-value)
-- turns the whole record into Redis' large hash encoding for good, at over twice the memory. The
-- record keeps the first bytes of `reason`, `last_error` and `resperr` (cut at a character
-- boundary, '…' marking the cut); the outcome-stream entry and the timeline entry of the
-- transition keep the whole text (FULL, per record key, for the entries this call writes).
local TEXT_CAP = 64
local CAPPED = {reason = true, last_error = true, resperr = true}
local FULL = {}
local function short(v)
  if type(v) ~= 'string' or #v <= TEXT_CAP then return v end
  local cut = TEXT_CAP - 3
  -- Back off to the first byte of a UTF-8 character (never keep half of one).
  while cut > 0 do
    local b = string.byte(v, cut + 1)
    if b < 0x80 or b >= 0xC0 then break end
    cut = cut - 1
  end
  return string.sub(v, 1, cut) .. '…'
end
-- The value to store for `field` of the record R: capped, the whole text remembered for its entries.
local function capped(field, v)
  if not CAPPED[field] or type(v) ~= 'string' or #v <= TEXT_CAP then return v end
  FULL[R] = FULL[R] or {}
  FULL[R][field] = v
  return short(v)
end

local function hget_num(key, field)
  local v = redis.call('HGET', key, field)
  if v == false or v == '' then return 0 end
  return tonumber(v) or 0
end

-- Moves the record from one state's index to another's; the caller writes 'state' itself, in the
-- HSET it makes anyway (each redis.call costs).
local function move_index(otn, old, new, now)
  if old == 'queued' and new ~= 'queued' and SETTLE then SETTLE(otn) end
  if old and STATE_KEY[old] then redis.call('ZREM', STATE_KEY[old], otn) end
  redis.call('ZADD', STATE_KEY[new], now, otn)
end

-- Moves the record from one state's index to another's and stores the new state.
local function set_state(otn, old, new, now)
  move_index(otn, old, new, now)
  redis.call('HSET', R, 'state', new)
end

-- The record fields an outcome-stream entry carries (besides prev_state and at).
local EVENT_FIELDS = {'out_trade_no', 'state', 'syssn', 'txamt', 'merchant', 'respcd', 'resperr', 'refund_syssn',
  'reason', 'submits', 'enquiries', 'fence', 'next_at'}
local EVENT_DEFAULT = {submits = '0', enquiries = '0', fence = '0', next_at = '0'}
local IS_EVENT_FIELD = {}
for _, k in ipairs(EVENT_FIELDS) do IS_EVENT_FIELD[k] = true end

-- The refund's timeline (a list beside its record, `<prefix>:t:<id>`): one entry per transition,
-- kept with the record and archived with it, long after the outcome stream has been trimmed. An
-- entry is its fields joined by the unit separator (\31): at, state, respcd, resperr,
-- refund_syssn, reason, last_error (the whole texts, see `capped`); control characters in the
-- texts become spaces (refund::timeline reads it).
-- The record key ends in `}:r:<id>`, and a hash tag ends at its first `}`.
local function timeline_key()
  return (string.gsub(R, '}:r:', '}:t:', 1))
end
local function one_line(v)
  if v == nil or v == false then return '' end
  return (string.gsub(v, '%c', ' '))
end
local function push_timeline(now, state, respcd, resperr, refund_syssn, reason, last_error)
  redis.call('RPUSH', timeline_key(), table.concat({tostring(now), state or '', one_line(respcd), one_line(resperr),
    one_line(refund_syssn), one_line(reason), one_line(last_error)}, '\31'))
end

-- Appends an entry to the outcome stream from `f` (field -> value, the record as it now is): one
-- entry per transition.
local function emit_from(f, prev, now, maxlen)
  local entry = {}
  for _, k in ipairs(EVENT_FIELDS) do
    entry[#entry + 1] = k
    entry[#entry + 1] = f[k] or EVENT_DEFAULT[k] or ''
    if k == 'state' then entry[#entry + 1] = 'prev_state'; entry[#entry + 1] = prev or '' end
  end
  entry[#entry + 1] = 'at'
  entry[#entry + 1] = tostring(now)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', unpack(entry))
  local full = FULL[R] or {}
  push_timeline(now, f.state, full.respcd or f.respcd, full.resperr or f.resperr, f.refund_syssn,
    full.reason or f.reason, full.last_error or f.last_error)
  FULL[R] = nil
end

-- Appends the record's public fields, read back, to the outcome stream.
local function emit(prev, now, maxlen)
  local v = redis.call('HMGET', R, unpack(EVENT_FIELDS))
  local f = {}
  for i, k in ipairs(EVENT_FIELDS) do f[k] = v[i] or nil end
  for k, full in pairs(FULL[R] or {}) do f[k] = full end
  emit_from(f, prev, now, maxlen)
end

-- Payment accounting when a refund leaves flight: a success commits its amount; a final state
-- frees the payment for its next refund. needs_review keeps the payment locked: money may have moved.
local function settle_payment(otn, new, txamt)
  if new == 'succeeded' then redis.call('HINCRBY', P, 'committed', txamt) end
  if FINAL[new] and redis.call('HGET', P, 'inflight') == otn then
    redis.call('HDEL', P, 'inflight')
  end
end

-- A fence no earlier claim can have used, even one Redis lost in a crash (AOF everysec, a failover):
-- it grows with the server's clock, not only by increments, so a rolled-back record never hands
-- out a fence again that a worker still holds.
-- Milliseconds keep it below 10^14, where Lua's number-to-string conversion is still exact; it
-- is handled as a string everywhere else.
-- The clock is read once per script call: a fence only has to exceed the record's last one and
-- the server's time, so the refunds of one batch may share a reading.
local CLOCK = nil
local function next_fence(old)
  if not CLOCK then
    local t = redis.call('TIME')
    CLOCK = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return string.format('%d', math.max((tonumber(old) or 0) + 1, CLOCK))
end

-- Moves a refund that has waited too long (for a paused merchant, a busy payment, missing
-- credentials) to needs_review, so it is seen instead of deferred for ever.
-- A refund found in 'submitting' may have been sent: it stays 'uncertain' whatever happens to it.
local function review(otn, state, why, now, maxlen)
  if state == 'submitting' then redis.call('HSET', R, 'uncertain', 1) end
  redis.call('HSET', R, 'reason', capped('reason', why), 'updated_at', now, 'next_at', 0)
  redis.call('HDEL', R, 'lease_owner', 'lease_until')
  redis.call('ZREM', KEYS[2], otn)
  set_state(otn, state, 'needs_review', now)
  emit(state, now, maxlen)
end

-- Fails a refund that was never sent (one that would take its payment past what was paid, or
-- whose paid amount disagrees with its payment's), saying why.
local function fail_unsent(otn, state, why, now, maxlen)
  redis.call('HSET', R, 'reason', capped('reason', why), 'updated_at', now, 'next_at', 0)
  redis.call('ZREM', KEYS[2], otn)
  set_state(otn, state, 'failed', now)
  emit(state, now, maxlen)
end

-- Writes field/value pairs from ARGV[first..] and the pairs in `extra` in one HSET: each
-- redis.call costs, and scripts are most of the Redis time a refund takes. An empty value clears a
-- field (it is stored empty, which every reader takes as absent), so no HDEL is needed.
-- The pseudo-field 'evidence' (an attempt's evidence, JSON: see Decision::with_evidence) is not
-- a field: it is appended to the refund's attempts, a list beside its record (`<prefix>:e:<id>`).
local function write_fields(first, extra)
  local set = extra or {}
  for i = 2, #set, 2 do set[i] = capped(set[i - 1], set[i]) end
  for i = first, #ARGV, 2 do
    if ARGV[i] == 'evidence' then
      if ARGV[i + 1] ~= '' then redis.call('RPUSH', (string.gsub(R, '}:r:', '}:e:', 1)), ARGV[i + 1]) end
    else
      set[#set + 1] = ARGV[i]
      set[#set + 1] = capped(ARGV[i], ARGV[i + 1])
    end
  end
  if #set > 0 then redis.call('HSET', R, unpack(set)) end
end

-- A token bucket per merchant (QFPay allows 100 req/s and 400 req/min per merchant, shared with
-- its payments), one string "<tokens> <at ms>" that expires once it would be full again. Takes one
-- token if there is one. Returns 0 when one was taken, else the ms until one will be there.
-- Buckets are read once and written once per script call (a batch of claims for one merchant
-- costs two commands, not two per refund): every script that takes tokens ends with flush_buckets().
local BUCKETS = {}
local function take_token(key, rate, burst, now)
  local b = BUCKETS[key]
  if not b then
    b = {tokens = burst, at = now, ttl = math.ceil(burst * 1000 / rate) + 1000}
    local v = redis.call('GET', key)
    if v then
      local t, a = string.match(v, '^(%S+) (%S+)$')
      b.tokens, b.at = tonumber(t) or burst, tonumber(a) or now
    end
    BUCKETS[key] = b
  end
  b.tokens = math.min(burst, b.tokens + math.max(0, now - b.at) * rate / 1000)
  b.at = now
  b.dirty = true
  if b.tokens >= 1 then
    b.tokens = b.tokens - 1
    return 0
  end
  return math.ceil((1 - b.tokens) * 1000 / rate)
end

local function flush_buckets()
  for key, b in pairs(BUCKETS) do
    if b.dirty then redis.call('SET', key, tostring(b.tokens) .. ' ' .. b.at, 'PX', b.ttl) end
    b.dirty = false
  end
end

-- Why a merchant is paused (nil: it is not), read once per merchant per script call.
local PAUSED = {}
local function paused_reason(merchant)
  local p = PAUSED[merchant]
  if p == nil then
    p = redis.call('HGET', KEYS[5], merchant)
    PAUSED[merchant] = p
  end
  return p or nil
end
