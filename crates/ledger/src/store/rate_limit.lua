-- rate_limit: takes a token from a merchant's bucket (see take_token in common.lua).
-- KEYS[1] the bucket (a string: tokens and time). A: `RateArgs` (transition.rs).
-- Returns 0 when a token was taken, else the ms until one will be there.
local wait = take_token(KEYS[1], A.rate, A.burst, A.now)
flush_buckets()
return wait
