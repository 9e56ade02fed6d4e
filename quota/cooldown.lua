-- cooldown.lua: record that Bedrock refused or failed a target, and cool
-- the target down for every replica once it keeps doing so.
--
-- KEYS[1] the target's :cool hash: "n" failures since "since" (Unix ms),
--         "until" the end of the cooldown in force (Unix ms).
-- ARGV[1] failures that start a cooldown   ARGV[2] their window, ms
-- ARGV[3] cooldown, ms   ARGV[4] retry-after Bedrock asked for, ms (0: none)
--
-- Returns the cooldown left, ms (0: the target is not cooled down). A
-- retry-after cools at once, for at least as long as Bedrock asked: it is
-- Bedrock saying when to come back, so one is enough.

if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local after, window, cool, retry = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local h = redis.call('HMGET', KEYS[1], 'n', 'since', 'until')
local n, since, untl = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0
if now - since > window then n, since = 0, now end
n = n + 1

local target = 0
if retry > 0 then target = now + retry end
if n >= after then target = math.max(target, now + cool) end
if target > untl then
  untl = target
  n, since = 0, now
end
redis.call('HSET', KEYS[1], 'n', string.format('%d', n), 'since', string.format('%d', since), 'until', string.format('%d', untl))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(window, untl - now) + 1000))
return math.max(untl - now, 0)
