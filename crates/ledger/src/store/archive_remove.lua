-- archive_remove: removes refunds the archive now holds, leaving a tombstone of each (tomb.lua).
-- Guarantees: only a refund still final and unchanged since it was archived (its updated_at as
-- read then) is removed, so a refund an operator retried after it was read is kept, live; a
-- refund already gone is skipped. A removed refund leaves its record, timeline and every index;
-- its tombstone answers a later enqueue of the same (merchant, out_trade_no) as a duplicate with
-- its final outcome, or as a conflict. Its payment loses it; a payment with no refund left and
-- none in flight is removed too, leaving a tombstone of what was paid and already refunded, so
-- the over-refund guard still counts the archived refunds when the payment is refunded again.
-- Only the worker that holds the shard's archiving (KEYS[16], see `take_archiver`) removes: one
-- whose lease ran out while it wrote (a stall) removes nothing, and another has taken over.
-- With A.summarise (a final refund past `summary_after`, see summary.rs) a summary of the
-- record stays besides its tombstone: `summary_of` below, a JSON array under
-- `…}:s:<id>`, its id in its state's summaries index (KEYS[17..19]) by when it was created (as
-- the created index had it: reconciliation finds it by that time). Which refunds are summarised
-- (succeeded ones, or every final one: the layout's `summaries` and `final_summaries`) the
-- caller says in A.states (their tombstone letters); any other is answered 'changed'.
-- KEYS: 1..15 as every record script (1 and 4 the first refund's record and payment), 16 the
-- archiver lease, 17, 18, 19 the summaries indexes of succeeded, failed and cancelled refunds,
-- then the record and payment of each further refund: 20, 21 for the second, …
-- A: `RemoveArgs` (retention.rs; compact: the layout says tombstones 2); then, from ARGV[A_REST], per refund: id, updated_at, syssn, the number of evidence entries archived.
-- Returns one word per refund: 'removed' | 'changed' | 'gone', or {'lost'} (the lease).
if redis.call('GET', KEYS[16]) ~= A.owner then return {'lost'} end
TOMB_COMPACT = A.compact
local CODE = {succeeded = 's', failed = 'f', cancelled = 'c'}
-- A summary (format 2, read by summary.rs): [2, out_trade_no, syssn, txamt, orig_txamt, mchid,
-- udid, merchant, submits, enquiries, created_at, updated_at - created_at, submitted_at -
-- created_at, respcd, resperr, refund_syssn, sysdtm, operator, reason]: amounts as text, counts and
-- times as numbers (ms), 0 for a text that is absent, -1 for submitted_at absent; out_trade_no
-- 0 when it is the id, merchant 0 when it is the default one, reason 0 unless an operator
-- settled it or there is no respcd. Its state is succeeded. A failed or cancelled refund's
-- (format 3, which versions before it do not read) is the same, then its state letter (f, c).
local function summary_of(r, id, state)
  local f = redis.call('HMGET', r, 'out_trade_no', 'syssn', 'txamt', 'orig_txamt', 'mchid', 'udid', 'merchant',
    'submits', 'enquiries', 'created_at', 'updated_at', 'submitted_at', 'respcd', 'resperr', 'refund_syssn', 'sysdtm',
    'operator', 'reason')
  local function text(v) if v and v ~= '' then return v end return 0 end
  local function num(v) return tonumber(v) or 0 end
  local created = num(f[10])
  if f[1] == id then f[1] = false end
  -- The reason matters where a person settled the refund (a forced resolve says so there) or
  -- QFPay gave no answer (a refund failed before it was sent says why); else a worker's words for
  -- QFPay's answer ('enquiry: refund succeeded') are in the archived timeline, and its respcd here.
  if (not f[17] or f[17] == '') and f[13] and f[13] ~= '' then f[18] = false end
  if f[7] == 'default' then f[7] = false end
  local submitted = -1
  if f[12] and f[12] ~= '' then submitted = num(f[12]) - created end
  local summary = {2, text(f[1]), text(f[2]), text(f[3]), text(f[4]), text(f[5]), text(f[6]), text(f[7]),
    num(f[8]), num(f[9]), created, num(f[11]) - created, submitted, text(f[13]), text(f[14]), text(f[15]),
    text(f[16]), text(f[17]), text(f[18])}
  if state ~= 'succeeded' then summary[1], summary[20] = 3, CODE[state] end
  return cjson.encode(summary), created
end
-- The summaries index of each final state (KEYS[17..19]).
local SUMMARIES = {succeeded = KEYS[17], failed = KEYS[18], cancelled = KEYS[19]}
local out = {}
local a = A_REST
for i = 1, A.count do
  if i > 1 then R, P = KEYS[16 + 2 * i], KEYS[17 + 2 * i] end
  local id, seen, syssn, evidence = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local rec = redis.call('HMGET', R, 'state', 'updated_at', 'payload_hash', 'respcd', 'merchant', 'out_trade_no')
  local ekey = string.gsub(R, '}:r:', '}:e:', 1)
  if not rec[1] then
    -- Nothing to remove, but an index entry may be left over: clear it.
    for _, s in ipairs({'succeeded', 'failed', 'cancelled'}) do redis.call('ZREM', STATE_KEY[s], id) end
    redis.call('ZREM', KEYS[14], id)
    out[i] = 'gone'
  elseif not FINAL[rec[1]] or rec[2] ~= seen or redis.call('LLEN', ekey) ~= evidence
      or (A.summarise and not string.find(A.states, CODE[rec[1]], 1, true)) then
    -- (Evidence kept since it was read, of a request fenced off, would not be in the archive.)
    out[i] = 'changed'
  else
    -- A missing hash is written '-': no request matches it (a conflict), and the sweep can read the day.
    local hash = rec[3] and string.sub(rec[3], 1, 12) or '-'
    local tomb = hash .. ' ' .. A.day .. ' ' .. CODE[rec[1]] .. ' ' .. (rec[4] or '')
    tomb_put('x', id, tomb)
    -- Another merchant's refund kept under its bare out_trade_no (before refunds were merchant-
    -- scoped): its tombstone is under its scoped id too, where that merchant's enqueues look first.
    local merchant, otn = rec[5], rec[6]
    if merchant and otn and merchant ~= 'default' and id == otn then tomb_put('x', merchant .. ':' .. otn, tomb) end
    if A.summarise then
      local summary, created = summary_of(R, id, rec[1])
      redis.call('SET', (string.gsub(R, '}:r:', '}:s:', 1)), summary)
      redis.call('ZADD', SUMMARIES[rec[1]], created, id)
    end
    redis.call('ZREM', STATE_KEY[rec[1]], id)
    redis.call('ZREM', KEYS[14], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', P, 'r:' .. id)
    local rest = redis.call('HGETALL', P)
    local others, paid, committed = false, nil, nil
    for j = 1, #rest, 2 do
      local k = rest[j]
      if k == 'paid' then paid = rest[j + 1]
      elseif k == 'committed' then committed = rest[j + 1]
      else others = true end
    end
    if not others and #rest > 0 then
      if paid or (tonumber(committed) or 0) > 0 then
        tomb_put('xp', syssn, (paid or '-') .. ' ' .. (committed or '0') .. ' ' .. A.day)
      end
      redis.call('DEL', P)
    end
    redis.call('DEL', R, timeline_key(), ekey)
    out[i] = 'removed'
  end
end
return out
