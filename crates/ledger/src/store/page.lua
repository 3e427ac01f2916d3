-- page: one page of a state index (zset scored by when each refund entered the state), after a
-- cursor (score, member) so that pages neither skip nor repeat while refunds come and go.
-- KEYS[1] the state index. A: `PageArgs` (reads.rs): cursor score ('' = from the start), cursor member, limit.
-- Returns the members of the page, each followed by its score.
local limit = A.limit
local start = 0
if A.score ~= '' then
  local score = tonumber(A.score)
  start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. A.score)
  -- Members that share the cursor's score sort by name: skip those up to the cursor's.
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], score, score, 'BYSCORE')) do
    if m <= A.member then start = start + 1 else break end
  end
end
return redis.call('ZRANGE', KEYS[1], start, start + limit - 1, 'WITHSCORES')
