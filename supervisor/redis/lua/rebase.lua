-- Join the cluster's epoch, or start a new one when Redis no longer holds what a node knows.
--
-- KEYS[1] epoch   KEYS[2] meta (hash: seq, base)   KEYS[3] the all-agents stream
-- ARGV[1] a fresh random epoch, used if a new one starts
-- ARGV[2] floor: the highest id the node knows (0: it knows none)
-- ARGV[3] gap: how far above the floor a new epoch's ids start
-- Returns {epoch, base, seq}; ids of the epoch are above base.
--
-- The epoch stays while it exists and Redis has at least the floor's ids. Otherwise (no epoch:
-- a new or wiped Redis; fewer ids than the floor: a restore from an old snapshot) a new epoch
-- starts at base = floor + gap, above any id a node that lagged by less than the gap could
-- have shown a client, so that ids never go backwards for anyone.

local epoch = redis.call('GET', KEYS[1])
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq'))
if not seq then
  local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
  seq = top and tonumber(string.match(top[1], '^(%d+)')) or 0
end
local floor = tonumber(ARGV[2])
if epoch and seq >= floor then
  local base = tonumber(redis.call('HGET', KEYS[2], 'base')) or 0
  return {epoch, base, seq}
end

local base = seq
if floor > 0 and floor + tonumber(ARGV[3]) > base then
  base = floor + tonumber(ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'seq', base, 'base', base)
return {ARGV[1], base, base}
