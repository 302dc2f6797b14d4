-- A node's lease expired: mark its active agents lost, once, for the one caller that does it.
-- KEYS[1] agents (name -> "<node>\t<state>\t<reason>\t<agent JSON>"); KEYS[2] the dead
-- node's lease. ARGV[1] dead node; ARGV[2] reason; ARGV[3..] the active states.
-- Returns a flat list: name, entry (as it was), for each agent moved to lost: none if the
-- lease is back, or if another node reaped them first (the script runs alone).
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {}
end
local active = {}
for i = 3, #ARGV do
  active[ARGV[i]] = true
end
local moved = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local node, state, _, json = string.match(all[i + 1], '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  if node == ARGV[1] and active[state] then
    table.insert(moved, all[i])
    table.insert(moved, all[i + 1])
    redis.call('HSET', KEYS[1], all[i], node .. '\tlost\t' .. ARGV[2] .. '\t' .. json)
  end
end
return moved
