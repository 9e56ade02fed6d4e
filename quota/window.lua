-- window.lua: helpers shared by admit.lua and settle.lua. The Go side
-- prepends this file to each of them (a script cannot include another), so
-- the window arithmetic exists once.

-- Integers are formatted here: Redis formats Lua numbers in the shortest
-- form, e.g. 1e+08, which HINCRBY and PEXPIRE reject.
local function s(x) return string.format('%d', x) end

-- advance drops the buckets that left the window ending at the current
-- bucket (the one holding now) and returns the oldest bucket kept (lo) and
-- the sums T and R, which it stores. The current bucket is then lo + N. If
-- the clock went back, the window does not.
local function advance(wk, now, width, N)
  local h = redis.call('HMGET', wk, 'lo', 'T', 'R')
  local newlo = math.floor(now / width) - N
  local lo = tonumber(h[1])
  if lo == nil then return newlo, 0, 0 end
  local T, R = tonumber(h[2]) or 0, tonumber(h[3]) or 0
  if newlo <= lo then return lo, T, R end
  if newlo - lo > N then
    redis.call('DEL', wk)
    return newlo, 0, 0
  end
  local f = {}
  for b = lo, newlo - 1 do
    f[#f + 1] = 't' .. s(b)
    f[#f + 1] = 'r' .. s(b)
  end
  local v = redis.call('HMGET', wk, unpack(f))
  for j = 1, #f, 2 do
    T = T - (tonumber(v[j]) or 0)
    R = R - (tonumber(v[j + 1]) or 0)
  end
  redis.call('HDEL', wk, unpack(f))
  redis.call('HSET', wk, 'lo', s(newlo), 'T', s(T), 'R', s(R))
  return newlo, T, R
end
