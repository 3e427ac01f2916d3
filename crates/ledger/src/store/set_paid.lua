-- set_paid: record what a payment was paid, as learned by enquiry, unless already known.
-- ARGV: 1 paid amount. Returns the amount now recorded.
redis.call('HSETNX', KEYS[4], 'paid', ARGV[1])
return redis.call('HGET', KEYS[4], 'paid')
