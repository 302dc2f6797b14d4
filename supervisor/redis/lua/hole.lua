-- Record events a node dropped (it could not write them while Redis was away): a hole just
-- after the last id Redis has issued. Readers resuming at or before that id get `reset` with
-- the count. KEYS[1] meta; KEYS[2] holes (hash: "<token> <channel>" -> "<seq> <count>").
-- ARGV[1] a token of this episode (a retried call overwrites, never doubles); then pairs of
-- channel, count. Returns the id the hole is after.
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq')) or 0
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[1] .. ' ' .. ARGV[i], seq .. ' ' .. ARGV[i + 1])
end
return seq
