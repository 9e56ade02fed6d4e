-- write.lua: set or delete one tenant's override, record revoked key ids,
-- set the closed marker and bump the version, in one step, only if the
-- version is still the one the writer read (optimistic concurrency). A
-- script runs atomically, so no replica ever sees the document without the
-- version change, or the reverse.
--
-- KEYS[1]  the overrides hash (tenant id -> JSON document)
-- KEYS[2]  the version counter
-- KEYS[3]  the set of revoked key ids, of every tenant
-- KEYS[4]  the closed marker
-- ARGV[1]  the version the writer read ("0" when there was none)
-- ARGV[2]  the tenant id
-- ARGV[3]  the new document; "" deletes the tenant's field
-- ARGV[4]  a random first version, used when there is no version yet
-- ARGV[5…] key ids to add to the revoked set
--
-- Returns {1, new version} or {0, current version} on a conflict. Versions
-- travel as strings: Lua numbers are doubles.

local raw = redis.call('GET', KEYS[2])
local cur = 0
if raw then cur = tonumber(raw) end
if cur ~= tonumber(ARGV[1]) then
  return {0, raw or '0'}
end

if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
for i = 5, #ARGV do
  redis.call('SADD', KEYS[3], ARGV[i])
end
-- Tenants were administered here: from now on a replica that finds no
-- tenant left refuses everyone instead of running open. Nothing deletes it.
redis.call('SET', KEYS[4], '1')

if raw then
  return {1, string.format('%d', redis.call('INCR', KEYS[2]))}
end
-- The first version is random rather than 1. Replicas compare versions for
-- equality, so if Redis loses its data (a restart without persistence) and
-- counting starts again, a counter restarted at 1 could meet the very
-- number a replica last loaded, and that replica would never reload; a
-- random start (below 2^52, exact in a Lua number) all but rules it out.
redis.call('SET', KEYS[2], ARGV[4])
return {1, ARGV[4]}
