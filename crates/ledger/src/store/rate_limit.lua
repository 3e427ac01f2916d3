-- rate_limit: takes a token from a merchant's bucket (see take_token in common.lua).
-- KEYS[1] the bucket (a string: tokens and time). ARGV: 1 rate per second, 2 burst, 3 now ms.
-- Returns 0 when a token was taken, else the ms until one will be there.
return take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
