-- Claim an agent name for a node, or find who has it: names are unique in a cluster.
-- KEYS[1] agents (hash: name -> "<node>\t<state>\t<reason>\t<agent JSON>", see agents.py).
-- ARGV[1] name, ARGV[2] node, ARGV[3] the entry to store.
-- Returns the node that has the name now: ARGV[2] when the claim worked.
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local owner = string.match(held, '^([^\t]*)\t')
  if owner ~= ARGV[2] then
    return owner
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return ARGV[2]
