-- settle.lua: replace a lease's reservation with the actual usage and
-- release its concurrency slots, once. See keys.go for the key layout.
--
-- KEYS[1] <p>{tag}:leases
-- then per budget i, at base = 1 + 3*(i-1): :w :d :c
--
-- ARGV[1] lease id   ARGV[2] admit time (Lease.At), ms
-- ARGV[3] delta = actual - reserved tokens
-- ARGV[4] bucket width, ms   ARGV[5] buckets in the window
-- ARGV[6] linger, ms: keep the concurrency slots this long instead of
--         releasing them (0: release now)
-- ARGV[7] void (1/0): undo the admission, the request included
-- ARGV[8] sent, ms (0: unknown): when the request left for the upstream,
--         on the store's clock; the window charge moves to its bucket
-- ARGV[9] reserved tokens (Lease.Tokens)
-- then per budget i, at base = 9 + 3*(i-1): window? day? concurrency? (1/0)
--
-- Returns 1 when the counters were adjusted, 0 when the lease was already
-- settled (or is older than the retention of :leases): a second Settle
-- never refunds twice.

if redis.replicate_commands then pcall(redis.replicate_commands) end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local lease = ARGV[1]
local at = tonumber(ARGV[2])
local delta = tonumber(ARGV[3])
local width = tonumber(ARGV[4])
local N = tonumber(ARGV[5])
local DAY = 86400000
local nb = (#KEYS - 1) / 3


-- The lease leaves :leases exactly once; whoever removes it adjusts the
-- counters. This holds even when the concurrency slot already expired,
-- which is why the slot itself cannot be the marker.
local linger = tonumber(ARGV[6])
local dr = 0
if ARGV[7] == '1' then dr = -1 end
local sent = tonumber(ARGV[8])
local reserved = tonumber(ARGV[9])
-- An admission whose reply was lost is settled without its time: take the
-- one the admission recorded.
if at == 0 then at = tonumber(redis.call('ZSCORE', KEYS[1], lease)) or now end
local first = redis.call('ZREM', KEYS[1], lease)
for i = 1, nb do
  if ARGV[9 + 3 * (i - 1) + 3] == '1' then
    local ck = KEYS[1 + 3 * (i - 1) + 3]
    if linger > 0 then
      -- XX: only a slot still held lingers; an expired one stays gone.
      redis.call('ZADD', ck, 'XX', s(now + linger), lease)
    else
      redis.call('ZREM', ck, lease)
    end
  end
end
-- The upstream counts a request when it arrives, not when it was
-- admitted: a charge moves to the bucket of when the request was sent, so
-- that it leaves the window no earlier than the upstream forgets it.
local moves = sent > at and math.floor(sent / width) > math.floor(at / width)
if first == 0 or (delta == 0 and dr == 0 and not moves) then return first end


-- adjust applies delta (and dr) to bucket b of window wk, or, when b is
-- nil, only keeps what advance computed.
local function adjust(wk, b, lo, T, R)
  if b then
    local cur = tonumber(redis.call('HGET', wk, 't' .. s(b))) or 0
    local nv = math.max(cur + delta, 0)
    T = T + nv - cur
    if dr ~= 0 then
      local rc = tonumber(redis.call('HGET', wk, 'r' .. s(b))) or 0
      local rv = math.max(rc + dr, 0)
      R = R + rv - rc
      redis.call('HSET', wk, 'r' .. s(b), s(rv))
    end
    redis.call('HSET', wk, 't' .. s(b), s(nv), 'lo', s(lo), 'T', s(T), 'R', s(R))
    redis.call('PEXPIRE', wk, s((N + 2) * width))
  elseif redis.call('EXISTS', wk) == 1 then
    redis.call('HSET', wk, 'lo', s(lo), 'T', s(T), 'R', s(R))
  end
end

local today = math.floor(now / DAY)
for i = 1, nb do
  local k, a = 1 + 3 * (i - 1), 9 + 3 * (i - 1)
  if ARGV[a + 1] == '1' then
    -- Window: adjust the bucket that was charged while it still counts;
    -- once it has left the window only an overrun is charged, to the
    -- current bucket, since a refund there would free capacity twice.
    local wk = KEYS[k + 1]
    local lo, T, R = advance(wk, now, width, N)
    local c = lo + N
    local b = math.min(math.floor(at / width), c)
    local bn = b
    if moves then bn = math.min(math.floor(sent / width), c) end
    if b >= lo and bn > b then
      -- Move: the reservation leaves the admission's bucket, the actual
      -- cost (and the request, unless void) lands in the sending one.
      local h = redis.call('HMGET', wk, 't' .. s(b), 'r' .. s(b), 't' .. s(bn), 'r' .. s(bn))
      local ot, orq = tonumber(h[1]) or 0, tonumber(h[2]) or 0
      local nt, nrq = tonumber(h[3]) or 0, tonumber(h[4]) or 0
      local ot2, orq2 = math.max(ot - reserved, 0), math.max(orq - 1, 0)
      local nt2, nrq2 = nt + math.max(reserved + delta, 0), nrq + 1 + dr
      T = T + (ot2 - ot) + (nt2 - nt)
      R = R + (orq2 - orq) + (nrq2 - nrq)
      redis.call('HSET', wk, 't' .. s(b), s(ot2), 'r' .. s(b), s(orq2), 't' .. s(bn), s(nt2), 'r' .. s(bn), s(nrq2),
        'lo', s(lo), 'T', s(T), 'R', s(R))
      redis.call('PEXPIRE', wk, s((N + 2) * width))
    else
      if b < lo then b = (delta > 0) and c or nil end
      adjust(wk, b, lo, T, R)
    end
  end
  if ARGV[a + 2] == '1' then
    -- Day: adjust today if the lease was charged today; an overrun of a
    -- lease from an earlier day is charged to today.
    local dk = KEYS[k + 2]
    if math.floor(at / DAY) == today or delta > 0 then
      local h = redis.call('HMGET', dk, 'day', 'n')
      local used = 0
      if tonumber(h[1]) == today then used = tonumber(h[2]) or 0 end
      redis.call('HSET', dk, 'day', s(today), 'n', s(math.max(used + delta, 0)))
      redis.call('PEXPIRE', dk, s(2 * DAY))
    end
  end
end
return 1
