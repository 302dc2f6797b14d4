-- Append one batch of events: give them the next ids of the cluster and add each to the
-- all-agents stream and to its channel's stream, under explicit stream ids "<id>-0".
-- Atomic (a script runs alone), so ids are dense: every id in 1..seq is one event.
--
-- KEYS[1] epoch          KEYS[2] meta (hash: seq, base)   KEYS[3] this node's lease
-- KEYS[4] batches (hash: node -> "token batch"; "node:<batch % 16>" -> "token batch first")
-- KEYS[5] the all-agents stream; KEYS[5 + k] the stream of channel k (k = 1..m)
-- ARGV[1] the epoch the node is in     ARGV[2] node name   ARGV[3] its lease token
-- ARGV[4] batch number (per token, increasing)              ARGV[5] floor: highest id the node knows
-- ARGV[6] MAXLEN ~ of the all-agents stream   ARGV[7] MAXLEN ~ of a channel stream (0: no trim)
-- ARGV[8] m; ARGV[8 + k] name of channel k; then per event: channel index k, envelope tail
--   (the event's JSON without its leading '{"id":N,')
-- Returns the first id, or the same again for a batch already written (checked first, so that
-- a node learns what it wrote even once fenced). Errors, with nothing written:
--   EPOCH <current>   Redis was replaced or wiped: the node must join again (lua/rebase.lua);
--   FENCED            the lease is gone or not this node's;
--   REWOUND <seq>     Redis has issued fewer ids than the node knows (an old snapshot);
--   STALE <last>      a batch older than the retry window.

-- A batch already written under this token (its reply was lost, the node sent it again) gets
-- its first id back; the last RETRY_WINDOW (16) batches of each node are remembered.
local node, token, batch = ARGV[2], ARGV[3], tonumber(ARGV[4])
local last = redis.call('HGET', KEYS[4], node)
if last then
  local last_token, last_batch = string.match(last, '^(%S+) (%d+)$')
  if last_token == token and batch <= tonumber(last_batch) then
    local done = redis.call('HGET', KEYS[4], node .. ':' .. (batch % 16))
    if done then
      local done_token, done_batch, done_first = string.match(done, '^(%S+) (%d+) (%d+)$')
      if done_token == token and tonumber(done_batch) == batch then
        return tonumber(done_first)
      end
    end
    return redis.error_reply('STALE ' .. last_batch)
  end
end

local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then
  return redis.error_reply('EPOCH ' .. (epoch or ''))
end
if redis.call('GET', KEYS[3]) ~= token then
  return redis.error_reply('FENCED')
end

local seq = tonumber(redis.call('HGET', KEYS[2], 'seq'))
if not seq then
  -- The counter is gone but the epoch is not (deleted by hand): go on from the stream.
  local top = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)[1]
  seq = top and tonumber(string.match(top[1], '^(%d+)')) or 0
  redis.call('HSET', KEYS[2], 'seq', seq)
end
if seq < tonumber(ARGV[5]) then
  return redis.error_reply('REWOUND ' .. seq)
end

local m = tonumber(ARGV[8])
local count = (#ARGV - 8 - m) / 2
local first = redis.call('HINCRBY', KEYS[2], 'seq', count) - count + 1
local max_all, max_channel = ARGV[6], ARGV[7]
-- Each channel numbers its events 1, 2, 3... ('n:<channel>' in meta; 'f:<channel>' is the id
-- of its first event): what MAXLEN trimmed from a channel's stream is then counted exactly,
-- as the embedded backend's segment manifest does (the entry's field 'n').
local per_channel = {}
for j = 9 + m, #ARGV, 2 do
  local k = tonumber(ARGV[j])
  per_channel[k] = (per_channel[k] or 0) + 1
end
local ordinal = {}
for k, n in pairs(per_channel) do
  ordinal[k] = redis.call('HINCRBY', KEYS[2], 'n:' .. ARGV[8 + k], n) - n
end
local at = 9 + m
for i = 0, count - 1 do
  local k = tonumber(ARGV[at])
  local id = first + i
  local entry = id .. '-0'
  local json = '{"id":' .. id .. ',' .. ARGV[at + 1]
  ordinal[k] = ordinal[k] + 1
  if ordinal[k] == 1 then
    redis.call('HSET', KEYS[2], 'f:' .. ARGV[8 + k], id)
  end
  if max_all == '0' then
    redis.call('XADD', KEYS[5], entry, 'channel', ARGV[8 + k], 'event', json)
  else
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', max_all, entry, 'channel', ARGV[8 + k], 'event', json)
  end
  if max_channel == '0' then
    redis.call('XADD', KEYS[5 + k], entry, 'n', ordinal[k], 'event', json)
  else
    redis.call('XADD', KEYS[5 + k], 'MAXLEN', '~', max_channel, entry, 'n', ordinal[k], 'event', json)
  end
  at = at + 2
end
redis.call('HSET', KEYS[4], node, token .. ' ' .. batch,
  node .. ':' .. (batch % 16), token .. ' ' .. batch .. ' ' .. first)
return first
