-- janitor: forget up to ARGV[2] finished apalis jobs (their data, meta and result), so Redis does
-- not grow by ~0.6 KB per refund step forever. qfrefund never reads a finished job.
-- KEYS[1] the queue's done set, KEYS[2] its data hash; ARGV[1] the meta key prefix, ARGV[2] limit.
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', ARGV[1] .. ':' .. id)
  redis.call('HDEL', ARGV[1] .. ':result', id)
end
return #ids
