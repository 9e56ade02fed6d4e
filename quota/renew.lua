-- renew.lua: extend a lease's concurrency slots while its request runs.
--
-- KEYS: the :c sets of the lease's budgets that limit concurrency.
-- ARGV[1] lease id   ARGV[2] TTL from now, ms
--
-- Returns how many slots were gone: expired and pruned, or settled. Those
-- are not taken back (ZADD XX), since another request may hold them now.

if redis.replicate_commands then pcall(redis.replicate_commands) end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local function s(x) return string.format('%d', x) end

local lost = 0
for _, k in ipairs(KEYS) do
  if redis.call('ZADD', k, 'XX', 'CH', s(now + ttl), ARGV[1]) == 0 and not redis.call('ZSCORE', k, ARGV[1]) then
    lost = lost + 1
  elseif redis.call('PTTL', k) < ttl then
    redis.call('PEXPIRE', k, s(ttl))
  end
end
return lost
