-- usage.lua: read one budget's counters without changing them.
--
-- KEYS[1] :w   KEYS[2] :d   KEYS[3] :c   KEYS[4] (optional) the tag's :cool
-- ARGV[1] bucket width, ms   ARGV[2] buckets in the window
--
-- Returns {window tokens, window requests, tokens today, in flight}, and
-- with KEYS[4] the cooldown left in ms (see cooldown.lua). The
-- window is summed as an admission at this instant would sum it; nothing
-- is advanced, so a read never changes what an admission sees.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local width, N = tonumber(ARGV[1]), tonumber(ARGV[2])
local newlo = math.floor(now / width) - N

local T, R = 0, 0
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  local kind, b = string.match(h[i], '^([tr])(-?%d+)$')
  if kind and tonumber(b) >= newlo then
    if kind == 't' then T = T + tonumber(h[i + 1]) else R = R + tonumber(h[i + 1]) end
  end
end

local used = 0
local d = redis.call('HMGET', KEYS[2], 'day', 'n')
if tonumber(d[1]) == math.floor(now / 86400000) then used = tonumber(d[2]) or 0 end

local n = redis.call('ZCOUNT', KEYS[3], '(' .. string.format('%d', now), '+inf')
if KEYS[4] == nil then return {T, R, used, n} end
local untl = tonumber(redis.call('HGET', KEYS[4], 'until')) or 0
return {T, R, used, n, math.max(untl - now, 0)}
