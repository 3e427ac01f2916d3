-- page: one page of a state index (zset scored by when each refund entered the state), after a
-- cursor (score, member) so that pages neither skip nor repeat while refunds come and go.
-- KEYS[1] the state index. ARGV: 1 cursor score ('' = from the start), 2 cursor member, 3 limit.
-- Returns the members of the page, each followed by its score.
local limit = tonumber(ARGV[3])
local start = 0
if ARGV[1] ~= '' then
  local score = tonumber(ARGV[1])
  start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])
  -- Members that share the cursor's score sort by name: skip those up to the cursor's.
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], score, score, 'BYSCORE')) do
    if m <= ARGV[2] then start = start + 1 else break end
  end
end
return redis.call('ZRANGE', KEYS[1], start, start + limit - 1, 'WITHSCORES')
