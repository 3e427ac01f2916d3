-- enqueue_one: create a refund record, or recognise it (shared by enqueue and enqueue_many).
-- Guarantees: one record per (merchant, out_trade_no), ever. The same payload again returns
-- 'duplicate' and changes nothing; another payload returns 'conflict' and changes nothing (both
-- with the id of the record they found). A paid amount that disagrees with the one recorded for
-- the payment is refused. A new record is queued, due now, indexed (by state, due time, creation
-- time, and under its payment), and announced on the outcome stream, all in one step; the
-- merchant joins the shard's set of merchants (KEYS[16]). A merchant placed on another shard
-- (KEYS[17], see store/shards.rs) is refused ('misplaced'): the caller's placement is out of date.
-- Works on R (the record) and P (the payment), see common.lua. `id`: the refund's id in the shard
-- (see refund::placement): the out_trade_no alone for the default merchant, `<merchant>:<otn>`
-- else — except in a ledger from before refunds were merchant-scoped (KEYS[18], the layout,
-- says `legacy_ids`), where every merchant's refunds keep the bare out_trade_no, as the processes
-- of that version (which may still run) write them, until an operator scopes them.
-- fields: the record's field/value pairs, out_trade_no, syssn, txamt, merchant first, then the
-- optional ones present (none empty).
-- A refund archived and removed is answered from its tombstone ('archived_duplicate <id> <tomb>' or
-- 'archived_conflict <id> <tomb>'), and a payment whose refunds were all removed is restored from
-- its own (see tomb.lua). With A.compact the refund is enqueued fresh (see fresh.lua).
-- In Redis Cluster, the bare-out_trade_no key read below is not declared; it shares the slot.
-- While that slot migrates, this script never runs with a declared key missing (a new refund's
-- record is one), so it cannot read a key as absent that has just moved: Redis answers TRYAGAIN.
local SEEN_MERCHANT = {}
local LEGACY_IDS = nil
local function enqueue_one(id, hash, now, maxlen, orig, fields)
  -- fields starts with out_trade_no, syssn, txamt, merchant (NewRefund::fields).
  local otn, merchant = fields[2], fields[8]
  if not SEEN_MERCHANT[merchant] and redis.call('SISMEMBER', KEYS[17], merchant) == 1 then
    return {'misplaced'}
  end
  local existing
  if id ~= otn then
    if LEGACY_IDS == nil then LEGACY_IDS = redis.call('HGET', KEYS[18], 'legacy_ids') == '1' end
    local bare = string.sub(R, 1, #R - #id) .. otn
    if LEGACY_IDS then
      R, id = bare, otn
    else
      existing = redis.call('HGET', R, 'payload_hash')
      if not existing then
        -- A record of this merchant kept under the bare out_trade_no (before scoping) is this refund.
        local old = redis.call('HMGET', bare, 'payload_hash', 'merchant')
        if old[1] and old[2] == merchant then existing, id = old[1], otn end
      end
    end
  end
  if existing == nil then existing = redis.call('HGET', R, 'payload_hash') end
  if existing then
    -- A fresh record keeps the hash's first half (128 bits tell requests apart as well).
    if #existing >= 32 and existing == string.sub(hash, 1, #existing) then return {'duplicate', id} end
    return {'conflict', id}
  end
  -- Archived and removed (see tomb.lua): the tombstone answers as the record would have, with
  -- the final outcome it keeps. A tombstone under the bare out_trade_no (a record from before
  -- refunds were merchant-scoped) is this refund's only if the request is the same (the payload
  -- hash names the merchant).
  if tomb_meta().levels > 0 then
    local tomb = tomb_find('x', id)
    if tomb then
      if string.sub(tomb, 1, 12) == string.sub(hash, 1, 12) then return {'archived_duplicate', id, tomb} end
      return {'archived_conflict', id, tomb}
    end
    if id ~= otn then
      tomb = tomb_find('x', otn)
      if tomb and string.sub(tomb, 1, 12) == string.sub(hash, 1, 12) then return {'archived_duplicate', otn, tomb} end
    end
  end
  -- The payment: refused at the door if it disagrees with what is recorded for it (in its hash, or
  -- in its tombstone once every earlier refund of it was archived: see join_payment).
  local fresh, cur = nil, nil
  if A.compact then
    -- Fresh (fresh.lua): a payment the ledger knows nothing of is joined at the first claim.
    cur = redis.call('HMGET', P, 'paid', 'committed')
    fresh = (cur[1] or cur[2]) and '1' or '2'
    if fresh == '2' and tomb_meta().levels > 0 and tomb_find('xp', fields[4]) then fresh = '1' end
  end
  if fresh ~= '2' then
    local mismatch = join_payment(id, fields[4], orig, now, true, cur)
    if mismatch then return {'paid_mismatch', mismatch} end
  end
  -- Counters (fence, submits, enquiries, retries, not_found) start absent, which reads as 0.
  local set
  if fresh then
    set = {'payload_hash', string.sub(hash, 1, 32), 'state', 'queued', 'created_at', now, 'fresh', fresh}
  else
    set = {'payload_hash', hash, 'state', 'queued', 'created_at', now, 'updated_at', now, 'next_at', now}
  end
  for i = 1, #fields do set[#set + 1] = fields[i] end
  redis.call('HSET', R, unpack(set))
  local f = {syssn = fields[4], txamt = fields[6], merchant = merchant}
  redis.call('ZADD', STATE_KEY['queued'], now, id)
  if fresh then
    redis.call('RPUSH', READY, id)
  else
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('ZADD', KEYS[14], now, id)
  end
  if not SEEN_MERCHANT[merchant] then
    redis.call('SADD', KEYS[16], merchant)
    SEEN_MERCHANT[merchant] = true
  end
  -- The entry emit() would write, built from what is known instead of read back.
  local at = tostring(now)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'out_trade_no', otn, 'state', 'queued', 'prev_state', '',
    'syssn', f.syssn or '', 'txamt', f.txamt or '', 'merchant', f.merchant or '', 'respcd', '', 'resperr', '',
    'refund_syssn', '', 'reason', '', 'submits', '0', 'enquiries', '0', 'fence', '0', 'next_at', at, 'at', at)
  if not fresh then push_timeline(now, 'queued') end
  return {'created', id}
end
