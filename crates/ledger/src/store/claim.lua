-- claim: the claim of one named refund (see claim_one.lua for what a claim guarantees). Used when a
-- worker claims again after learning a payment's amount, and by tests and tools; workers take
-- due refunds K at a time with claim_due.
-- The caller names the refund's payment and merchant so that every key is declared; a record
-- that does not match them answers {'mismatch'} and nothing is written.
-- KEYS: 1..14 as every record script, 15 the merchant's token bucket. ARGV: `ClaimArgs` (claim.rs).
local rec = redis.call('HMGET', R, 'syssn', 'merchant')
if not rec[1] and not rec[2] then return {'missing'} end
if rec[1] ~= A.syssn or rec[2] ~= A.merchant then return {'mismatch'} end
local answer = claim_one(A.id, A, KEYS[15], served_set(A.served))
flush_buckets()
return answer
