-- claim_due: fetching is claiming. Takes up to A.limit refunds that are due now from the
-- due-index, oldest first, and claims each one exactly as claim_one does (lease, fence, state,
-- rate token, every guard), in one atomic call. Refunds of merchants this worker has no
-- credentials for are deferred (claim_one), so they never block the head of the index.
-- Entries that have no business in the due-index (a record gone, final, or waiting for a person)
-- are removed; one that cannot be claimed (a corrupt record, an error) is reported ('broken') and
-- never fails the batch. A refund answered need_paid is held for one lease (due-index only), so that no other
-- worker enquires its payment too while this one learns the amount.
-- KEYS: 1..14 as every record script, except that 1 and 4 are the prefixes of record and payment
-- keys (each refund's keys are derived from its own record: one hash tag, one slot); 15 the prefix
-- of the merchants' token buckets. ARGV: `FetchArgs` (fetch.rs).
-- Returns {{next_due or ''}, {id, otn, syssn, merchant, kind, ...}, ...}: one entry per refund looked
-- at, its claim_one answer after its name; next_due is the earliest score left in the index.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', A.now, 'LIMIT', 0, A.limit)
local record_prefix, derive = KEYS[1], {payment = KEYS[4], rate = KEYS[15]}
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
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] then out[1] = {first[2]} end
return out
