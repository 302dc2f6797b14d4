-- Forget an agent of the cluster registry, if it is still this node's.
-- KEYS[1] agents; ARGV[1] name, ARGV[2] node. Returns 1 when removed.
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and string.match(held, '^([^\t]*)\t') == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
