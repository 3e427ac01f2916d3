-- enqueue_one: create a refund record, or recognise it (shared by enqueue and enqueue_many).
-- Guarantees: one record per (merchant, out_trade_no), ever. The same payload again returns
-- 'duplicate' and changes nothing; another payload returns 'conflict' and changes nothing (both
-- with the id of the record they found). A paid amount that disagrees with the one recorded for
-- the payment is refused. A new record is queued, due now, indexed (by state, due time, creation
-- time, and under its payment), and announced on the outcome stream, all in one step; the
-- merchant joins the shard's set of merchants (KEYS[15]). A merchant placed on another shard
-- (KEYS[16], see store/shards.rs) is refused ('misplaced'): the caller's placement is out of date.
-- Works on R (the record) and P (the payment), see common.lua. `id`: the refund's id in the shard
-- (see refund::placement): the out_trade_no alone for the default merchant, `<merchant>:<otn>`
-- else — except in a ledger from before refunds were merchant-scoped (KEYS[17], the layout,
-- says `legacy_ids`), where every merchant's refunds keep the bare out_trade_no, as the processes
-- of that version (which may still run) write them, until an operator scopes them.
-- fields: the record's field/value pairs, out_trade_no, syssn, txamt, merchant first, then the
-- optional ones present (none empty).
-- A refund archived and removed is answered from its tombstone ('archived_duplicate <id> <tomb>' or
-- 'archived_conflict <id> <tomb>'), and a payment whose refunds were all removed is restored from
-- its own (see tomb.lua).
-- In Redis Cluster, the bare-out_trade_no key read below is not declared; it shares the slot.
-- While that slot migrates, this script never runs with a declared key missing (a new refund's
-- record is one), so it cannot read a key as absent that has just moved: Redis answers TRYAGAIN.
local SEEN_MERCHANT = {}
local LEGACY_IDS = nil
local function enqueue_one(id, hash, now, maxlen, orig, fields)
  -- fields starts with out_trade_no, syssn, txamt, merchant (NewRefund::fields).
  local otn, merchant = fields[2], fields[8]
  if not SEEN_MERCHANT[merchant] and redis.call('SISMEMBER', KEYS[16], merchant) == 1 then
    return {'misplaced'}
  end
  local existing
  if id ~= otn then
    if LEGACY_IDS == nil then LEGACY_IDS = redis.call('HGET', KEYS[17], 'legacy_ids') == '1' end
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
    if existing == hash then return {'duplicate', id} end
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
  local pay = {'r:' .. id, now}
  local cur = redis.call('HMGET', P, 'paid', 'committed')
  local paid = cur[1] or nil
  -- A payment whose earlier refunds were all archived: its tombstone keeps what was paid and
  -- refunded, and the payment is restored from it, so the over-refund guard counts them.
  local restore, restore_level, restore_field = nil, nil, nil
  if not cur[1] and not cur[2] and tomb_meta().levels > 0 then
    local rem, level, field = tomb_find('xp', fields[4])
    if rem then
      local p, c = string.match(rem, '^(%S+) (%S+)')
      if p and c then
        restore, restore_level, restore_field = {'committed', c}, level, field
        if p ~= '-' then paid = p; restore[3], restore[4] = 'paid', p end
      end
    end
  end
  if orig ~= '' then
    if paid and paid ~= orig then return {'paid_mismatch', paid} end
    pay[#pay + 1], pay[#pay + 2] = 'paid', orig
  end
  if restore then
    for _, v in ipairs(restore) do pay[#pay + 1] = v end
    tomb_del('xp', restore_level, fields[4], restore_field)
  end
  redis.call('HSET', P, unpack(pay))
  -- Counters (fence, submits, enquiries, retries, not_found) start absent, which reads as 0.
  local set = {'payload_hash', hash, 'state', 'queued', 'created_at', now, 'updated_at', now, 'next_at', now}
  for i = 1, #fields do set[#set + 1] = fields[i] end
  redis.call('HSET', R, unpack(set))
  local f = {syssn = fields[4], txamt = fields[6], merchant = merchant}
  redis.call('ZADD', STATE_KEY['queued'], now, id)
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('ZADD', KEYS[14], now, id)
  if not SEEN_MERCHANT[merchant] then
    redis.call('SADD', KEYS[15], merchant)
    SEEN_MERCHANT[merchant] = true
  end
  -- The entry emit() would write, built from what is known instead of read back.
  local at = tostring(now)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'out_trade_no', otn, 'state', 'queued', 'prev_state', '',
    'syssn', f.syssn or '', 'txamt', f.txamt or '', 'merchant', f.merchant or '', 'respcd', '', 'resperr', '',
    'refund_syssn', '', 'reason', '', 'submits', '0', 'enquiries', '0', 'fence', '0', 'next_at', at, 'at', at)
  push_timeline(now, 'queued')
  return {'created', id}
end
