-- Extend a lease if it is still this holder's. KEYS[1] lease; ARGV[1] token, ARGV[2] ttl (ms).
-- Returns 1 when renewed, 0 when the lease expired or another holder has it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
