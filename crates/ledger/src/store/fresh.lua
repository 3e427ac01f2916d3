-- Fresh refunds: a queued refund kept as small as Redis allows (a ledger whose layout says
-- `compact_queue`, see store/fresh.rs).
-- Enqueued fresh, a refund is its record (no updated_at, no next_at: both read as its creation
-- time), its entry in the queued index, its outcome-stream entry and its id on the ready list
-- (KEYS[15]; claim_due takes it from there). What every other refund is given at its enqueue, a
-- fresh one is given by the first claim that looks at it, whatever that claim does with it, or
-- when it first leaves 'queued' some other way (settle_fresh): its entry in the created index (at
-- its creation time), the first entry of its timeline and, when its payment was unknown to the
-- ledger at its enqueue (record field `fresh` 2; 1: it was put under its payment then), its
-- place under its payment (join_payment), restored from the payment's tombstone if every earlier
-- refund of it was archived meanwhile. So a fresh refund is only ever on the ready list, where
-- processes from before fresh refunds never look. Until it is settled it is found by creation
-- time through the queued index (store::reads), not under its payment.
-- Works on R and P (common.lua); needs tomb.lua before it.

-- Puts refund `id` under its payment P (joined at `now`) and records what was paid (`orig`, ''
-- if not known). A payment whose refunds were all archived is restored from its tombstone first,
-- so the over-refund guard counts them. Returns nil, or the amount recorded for the payment
-- when `orig` disagrees with it: `strict`, nothing is written then (the enqueue refuses the
-- refund); else the refund is put under its payment all the same, without `orig`.
local function join_payment(id, syssn, orig, now, strict, cur)
  local pay = {'r:' .. id, now}
  cur = cur or redis.call('HMGET', P, 'paid', 'committed')
  local paid = cur[1] or nil
  local restore, restore_level, restore_field = nil, nil, nil
  if not cur[1] and not cur[2] and tomb_meta().levels > 0 then
    local rem, level, field = tomb_find('xp', syssn)
    if rem then
      local p, c = string.match(rem, '^(%S+) (%S+)')
      if p and c then
        restore, restore_level, restore_field = {'committed', c}, level, field
        if p ~= '-' then paid = p; restore[3], restore[4] = 'paid', p end
      end
    end
  end
  local mismatch = nil
  if orig ~= '' then
    if paid and paid ~= orig then
      if strict then return paid end
      mismatch = paid
    else
      pay[#pay + 1], pay[#pay + 2] = 'paid', orig
    end
  end
  if restore then
    for _, v in ipairs(restore) do pay[#pay + 1] = v end
    tomb_del('xp', restore_level, syssn, restore_field)
  end
  redis.call('HSET', P, unpack(pay))
  return mismatch
end

-- Gives a fresh refund (the record R, id `otn`) what it was spared at its enqueue (see above);
-- nothing for any other. `f`: its fields fresh, created_at, syssn and orig_txamt if already read.
-- Returns nil, or the amount recorded for its payment when its own `orig_txamt` disagrees (its
-- claim then fails it, never sent). Once per record per script call.
local SETTLED = {}
local function settle_fresh(otn, f)
  if SETTLED[R] then return nil end
  SETTLED[R] = true
  if not f then
    local v = redis.call('HMGET', R, 'fresh', 'created_at', 'syssn', 'orig_txamt')
    f = {fresh = v[1], created_at = v[2], syssn = v[3], orig = v[4]}
  end
  if not f.fresh or f.fresh == '' then return nil end
  local created = tonumber(f.created_at) or 0
  local mismatch = nil
  if f.fresh == '2' and f.syssn then mismatch = join_payment(otn, f.syssn, f.orig or '', created, false) end
  redis.call('ZADD', KEYS[14], created, otn)
  push_timeline(created, 'queued')
  -- (Its next_at is written by whatever settles it; an updated_at still absent reads as its
  -- creation time.)
  redis.call('HDEL', R, 'fresh')
  return mismatch
end
SETTLE = settle_fresh

-- Takes fresh refund `id` off the ready list when it is within LEAVE_SCAN entries of either end
-- (bounded work; otherwise it stays listed until a claim passes it over, as it would anyway).
local LEAVE_SCAN = 10000
local function leave_ready(id)
  if redis.call('LPOS', READY, id, 'MAXLEN', LEAVE_SCAN) then
    redis.call('LREM', READY, 1, id)
  elseif redis.call('LPOS', READY, id, 'RANK', -1, 'MAXLEN', LEAVE_SCAN) then
    redis.call('LREM', READY, -1, id)
  end
end

-- Why a refund whose paid amount (`orig`) disagrees with the one `recorded` for payment `syssn`
-- is failed.
local function paid_disagrees(orig, recorded, syssn)
  return 'paid ' .. tostring(orig) .. ' disagrees with the ' .. recorded .. ' recorded for payment ' ..
    tostring(syssn) .. ': never sent'
end
