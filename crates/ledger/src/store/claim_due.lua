-- claim_due: fetching is claiming. Takes up to A.limit refunds that are due now from the
-- due-index, oldest first, then from the ready list, and claims each one exactly as claim_one
-- does (lease, fence, state, rate token, every guard), in one atomic call. Refunds of merchants
-- this worker has no credentials for are deferred (claim_one), so they never block the head of
-- the index.
-- Entries that have no business in the due-index (a record gone, final, or waiting for a person)
-- are removed; one that cannot be claimed (a corrupt record, an error) is reported ('broken') and
-- never fails the batch. A refund answered need_paid is held for one lease (due-index only), so that no other
-- worker enquires its payment too while this one learns the amount.
-- KEYS: 1..15 as every record script, except that 1 and 4 are the prefixes of record and payment
-- keys (each refund's keys are derived from its own record: one hash tag, one slot); 16 the prefix
-- of the merchants' token buckets. ARGV: `FetchArgs` (fetch.rs).
-- Returns {{next_due or ''}, {id, otn, syssn, merchant, kind, ...}, ...}: one entry per refund looked
-- at, its claim_one answer after its name; next_due is the earliest score left in the index (now
-- while the ready list holds any).
-- Half a batch at least goes to the ready list (KEYS[15]) while it holds any (a batch of one,
-- every other call), so that refunds due again (a busy merchant's, deferred a few ms at a time)
-- never keep new ones waiting.
local waiting = redis.call('LLEN', READY)
local due_limit = A.limit
if waiting > 0 then
  due_limit = math.floor(A.limit / 2)
  if A.limit == 1 and A.now % 2 == 0 then due_limit = 1 end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', A.now, 'LIMIT', 0, due_limit)
-- Then fresh refunds from the ready list, oldest first: each claimed below either goes to the
-- due-index (leased, deferred) or is done with, so the list loses them only once the batch is
-- through (LTRIM at the end: a call that fails half-way leaves them there, to be looked at again).
local ready = 0
local from_due = #due
if #due < A.limit and waiting > 0 then
  for _, id in ipairs(redis.call('LRANGE', READY, 0, A.limit - #due - 1)) do
    due[#due + 1] = id
    ready = ready + 1
  end
end
-- The rest of a batch the ready list could not fill, from the due-index.
if #due < A.limit and from_due == due_limit and due_limit < A.limit then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', A.now, 'LIMIT', due_limit, A.limit - #due)) do
    due[#due + 1] = id
  end
end
local record_prefix, derive = KEYS[1], {payment = KEYS[4], rate = KEYS[16]}
local served = served_set(A.served)
local out = {{''}}
-- (`otn` is each refund's id in this shard: see refund::placement.)
for _, otn in ipairs(due) do
  R = record_prefix .. otn
  local ok, answer, syssn, merchant, out_trade_no = pcall(claim_one, otn, A, nil, served, derive)
  if not ok then
    -- Whatever failed, the batch goes on: this refund is put a minute later and reported.
    redis.call('ZADD', KEYS[2], A.now + 60000, otn)
    answer = {'broken', 'claim failed: ' .. tostring(answer and (answer.err or answer) or '?')}
  end
  local kind = answer[1]
  if kind == 'missing' or kind == 'final' or kind == 'review' then
    redis.call('ZREM', KEYS[2], otn)
  elseif kind == 'need_paid' then
    redis.call('ZADD', KEYS[2], A.now + A.lease, otn)
  end
  local entry = {otn, out_trade_no or '', syssn or '', merchant or ''}
  for _, v in ipairs(answer) do entry[#entry + 1] = v end
  out[#out + 1] = entry
end
flush_buckets()
if ready > 0 then redis.call('LTRIM', READY, ready, -1) end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] then out[1] = {first[2]} end
if waiting > ready then out[1] = {tostring(A.now)} end
return out
