-- admit.lua: check every budget of one request and charge all of them, or
-- none, in one atomic step. See keys.go for the key layout and redis.go for
-- why the window is bucketed the way it is.
--
-- KEYS[1] <p>{tag}:leases      KEYS[2] <p>{tag}:tickets
-- KEYS[3] <p>{tag}:ticketinfo
-- then per budget i, at base = 3 + 4*(i-1): :w :d :c :q
--
-- ARGV[1] tokens reserved        ARGV[2] lease id
-- ARGV[3] ticket ('' for none)   ARGV[4] bucket width, ms
-- ARGV[5] buckets in the window  ARGV[6] lease TTL, ms
-- ARGV[7] ticket TTL, ms         ARGV[8] queue poll, ms
-- ARGV[9] lease retention, ms
-- ARGV[10] budgets (nb)          ARGV[11] shared budget (1-based; 0 none)
-- then per budget i, at base = 11 + 6*(i-1): id tpm rpm concurrency
--   tokens_per_day track (1: count every dimension, limited or not)
-- then per guarantee holder j, at base = 11 + 6*nb + 2*(j-1): id tpm,
--   with its window and concurrency keys KEYS[5 + 4*nb + 2*(j-1)] and
--   KEYS[6 + 4*nb + 2*(j-1)]; KEYS[4 + 4*nb] is the tag's :seen hash
--   (holder id -> last attempt, ms). See Shares in quota.go.
--
-- Returns {allowed, budget index (1-based; 0 none), dimension, retry ms
-- (-1 never), remaining tokens (-1 unlimited), remaining requests,
-- reset ms, now ms, ticket ('' when not queued)}.

-- Redis < 5 needs this before writing after TIME; later versions always
-- replicate effects and ignore it.
if redis.replicate_commands then pcall(redis.replicate_commands) end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local tokens = tonumber(ARGV[1])
local lease = ARGV[2]
local ticket = ARGV[3]
local width = tonumber(ARGV[4])
local N = tonumber(ARGV[5])
local leaseTTL = tonumber(ARGV[6])
local ticketTTL = tonumber(ARGV[7])
local poll = tonumber(ARGV[8])
local retention = tonumber(ARGV[9])
local DAY = 86400000
local day = math.floor(now / DAY)
local leasesKey, ticketsKey, infoKey = KEYS[1], KEYS[2], KEYS[3]

-- A lease id that is already recorded was admitted by an earlier run of
-- this same call (go-redis resends a command whose reply was lost): answer
-- as then, with its admit time, and charge nothing twice.
local seen = redis.call('ZSCORE', leasesKey, lease)
if seen then
  return {1, 0, '', 0, -1, -1, 0, tonumber(seen), ''}
end


-- extend sets a key's TTL to at least ms.
local function extend(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, s(ms)) end
end


-- retryWindow is how long until enough of the oldest buckets leave the
-- window for need more to fit under limit: dropping the k oldest buckets
-- takes until the current bucket is lo + N + k.
local function retryWindow(b, p, used, need, limit)
  local f = {}
  for x = b.lo, b.lo + N do f[#f + 1] = p .. s(x) end
  local v = redis.call('HMGET', b.wk, unpack(f))
  for k = 1, N + 1 do
    used = used - (tonumber(v[k]) or 0)
    if used + need <= limit then return (b.lo + N + k) * width - now end
  end
  return (b.lo + 2 * N + 1) * width - now
end

-- Tickets: drop the expired ones, then find this request's place.
local dead = redis.call('ZRANGEBYSCORE', ticketsKey, '-inf', s(now), 'LIMIT', 0, 100)
if #dead > 0 then
  redis.call('ZREM', ticketsKey, unpack(dead))
  redis.call('HDEL', infoKey, unpack(dead))
end
local live = false
local arrival = now
if ticket ~= '' then
  local e = redis.call('ZSCORE', ticketsKey, ticket)
  if e and tonumber(e) > now then
    live = true
    local info = redis.call('HGET', infoKey, ticket)
    if info then arrival = tonumber(string.match(info, '^(%d+)')) or now end
  end
else
  ticket = lease
end

-- ahead returns the tokens of the oldest live waiter in a queue if it
-- arrived before this request, else nil. Dead tickets (cancelled or
-- expired) are dropped as they reach the head.
local function ahead(qk)
  for _ = 1, 100 do
    local h = redis.call('ZRANGE', qk, 0, 0, 'WITHSCORES')
    if #h == 0 then return nil end
    local m, a = h[1], tonumber(h[2])
    if m == ticket and live then return nil end
    local e = m ~= ticket and redis.call('ZSCORE', ticketsKey, m)
    if e and tonumber(e) > now then
      if a < arrival or (a == arrival and m < ticket) then
        local info = redis.call('HGET', infoKey, m) or ''
        return tonumber(string.match(info, ' (%d+)$')) or 0
      end
      return nil
    end
    redis.call('ZREM', qk, m)
  end
  return nil
end

-- Read every budget. A tracked budget counts every dimension, limited or
-- not, so that its usage can be read.
local B = {}
local nb = tonumber(ARGV[10])
local shared = tonumber(ARGV[11])
for i = 1, nb do
  local k, a = 3 + 4 * (i - 1), 11 + 6 * (i - 1)
  local b = {
    wk = KEYS[k + 1], dk = KEYS[k + 2], ck = KEYS[k + 3], qk = KEYS[k + 4],
    id = ARGV[a + 1],
    tpm = tonumber(ARGV[a + 2]), rpm = tonumber(ARGV[a + 3]),
    conc = tonumber(ARGV[a + 4]), tpd = tonumber(ARGV[a + 5]),
    T = 0, R = 0, used = 0, n = 0,
  }
  local track = ARGV[a + 6] == '1'
  b.win = track or b.tpm > 0 or b.rpm > 0
  b.days = track or b.tpd > 0
  b.slots = track or b.conc > 0
  if b.win then b.lo, b.T, b.R = advance(b.wk, now, width, N) end
  if b.days then
    local h = redis.call('HMGET', b.dk, 'day', 'n')
    if tonumber(h[1]) == day then b.used = tonumber(h[2]) or 0 end
  end
  if b.slots then
    redis.call('ZREMRANGEBYSCORE', b.ck, '-inf', s(now))
    b.n = redis.call('ZCARD', b.ck)
  end
  b.head = ahead(b.qk)
  B[i] = b
end

-- Guaranteed shares of the shared budget (see Shares in quota.go). An
-- active holder (one that asked within the last window) keeps the unused
-- part of its share free of everyone else: tokens, and the same fraction
-- of the budget's requests and concurrency. An idle holder's share is lent
-- to anyone. A holder still within its own guarantee is not held back by
-- the budget's wait queue: that room is its own.
local resT, resR, resC = 0, 0, 0
if shared > 0 and B[shared].tpm > 0 then
  local P = B[shared]
  local base = 11 + 6 * nb
  local seenKey = KEYS[4 + 4 * nb]
  local nh = (#ARGV - base) / 2
  local ids = {}
  for j = 1, nh do ids[j] = ARGV[base + 2 * j - 1] end
  local seen = {}
  if nh > 0 then seen = redis.call('HMGET', seenKey, unpack(ids)) end
  local windowMs = N * width
  local touched = false
  for j = 1, nh do
    local id, g = ids[j], tonumber(ARGV[base + 2 * j])
    local mine = nil
    for _, b in ipairs(B) do
      if b.id == id then mine = b end
    end
    if mine then
      if mine.T + tokens <= g then P.head = nil end
      redis.call('HSET', seenKey, id, s(now))
      touched = true
    elseif (tonumber(seen[j]) or -windowMs) > now - windowMs then
      local hw, hc = KEYS[4 + 4 * nb + 2 * j - 1], KEYS[5 + 4 * nb + 2 * j - 1]
      local _, T, R = advance(hw, now, width, N)
      resT = resT + math.max(g - T, 0)
      if P.rpm > 0 then resR = resR + math.max(g * P.rpm / P.tpm - R, 0) end
      if P.conc > 0 then
        redis.call('ZREMRANGEBYSCORE', hc, '-inf', s(now))
        resC = resC + math.max(g * P.conc / P.tpm - redis.call('ZCARD', hc), 0)
      end
    end
  end
  if touched then redis.call('PEXPIRE', seenKey, s((N + 2) * width)) end
  -- Shares of requests and slots are fractions: only their whole sum is
  -- kept free. Rounding each up would let holders of small shares in a
  -- pool of few slots keep every slot from each other.
  resR, resC = math.floor(resR), math.floor(resC)
end

-- remaining reports the headroom of the tightest budget after the decision.
local function remaining()
  local remT, remR, tight = -1, -1, nil
  for _, b in ipairs(B) do
    if b.tpm > 0 then
      local r = math.max(b.tpm - b.T, 0)
      if remT < 0 or r < remT then remT, tight = r, b end
    end
    if b.rpm > 0 then
      local r = math.max(b.rpm - b.R, 0)
      if remR < 0 or r < remR then remR = r end
    end
  end
  local reset = 0
  if tight and tight.T > 0 then
    -- The oldest bucket holding tokens. Under load it is the first, so
    -- read a few buckets first and the rest only if need be.
    local x = tight.lo
    while reset == 0 and x <= tight.lo + N do
      local last = tight.lo + N
      if x == tight.lo then last = math.min(x + 3, last) end
      local f = {}
      for y = x, last do f[#f + 1] = 't' .. s(y) end
      local v = redis.call('HMGET', tight.wk, unpack(f))
      for k = 1, #f do
        if (tonumber(v[k]) or 0) > 0 then
          reset = (x + k - 1 + N + 1) * width - now
          break
        end
      end
      x = x + #f
    end
  end
  return remT, remR, reset
end

local function dropTicket()
  if live then
    redis.call('ZREM', ticketsKey, ticket)
    redis.call('HDEL', infoKey, ticket)
  end
end

local function deny(i, dim, retry, queued)
  local remT, remR, reset = remaining()
  return {0, i, dim, retry, remT, remR, reset, now, queued and ticket or ''}
end

-- A reservation bigger than a whole budget never fits: say so at once
-- (retry -1), and hold nobody up with a ticket.
for i, b in ipairs(B) do
  if b.tpm > 0 and tokens > b.tpm then dropTicket(); return deny(i, 'tpm', -1, false) end
  if b.tpd > 0 and tokens > b.tpd then dropTicket(); return deny(i, 'tokens_per_day', -1, false) end
end

-- Capacity. A request that fits alone may still have to leave room for the
-- oldest waiter of a budget (its head), so that large requests are not
-- starved by a stream of small ones; if that is all that stops it, it is
-- denied with dimension queue.
local capI, capDim, capRetry = 0, '', -1
local qI = 0
for i, b in ipairs(B) do
  local ht, hr = b.head or 0, b.head and 1 or 0
  local function short(dim, retry)
    b.wait = true
    if retry > capRetry then capI, capDim, capRetry = i, dim, retry end
  end
  local function behind()
    b.wait = true
    if qI == 0 then qI = i end
  end
  local rT, rR, rC = 0, 0, 0
  if i == shared then rT, rR, rC = resT, resR, resC end
  if b.tpm > 0 then
    local lim = b.tpm - rT
    if b.T + tokens > lim then short('tpm', retryWindow(b, 't', b.T, tokens, lim))
    elseif b.T + tokens + ht > lim then behind() end
  end
  if b.rpm > 0 then
    local lim = b.rpm - rR
    if b.R + 1 > lim then short('rpm', retryWindow(b, 'r', b.R, 1, lim))
    elseif b.R + 1 + hr > lim then behind() end
  end
  if b.tpd > 0 then
    if b.used + tokens > b.tpd then short('tokens_per_day', (day + 1) * DAY - now)
    elseif b.used + tokens + ht > b.tpd then behind() end
  end
  if b.conc > 0 then
    if b.n + 1 > b.conc - rC then short('concurrency', 0)
    elseif b.n + 1 + hr > b.conc - rC then behind() end
  end
end

if capI > 0 or qI > 0 then
  local i, dim, retry = capI, capDim, capRetry
  if capI == 0 then i, dim, retry = qI, 'queue', poll end
  if dim == 'tokens_per_day' then
    -- Waiting for the next day is no queue: everyone's day resets at once.
    dropTicket()
    return deny(i, dim, retry, false)
  end
  -- Wait in the queue of every budget that is short or held by its head;
  -- keep the first arrival, so that retrying never loses the place. The
  -- ticket lives until TicketTTL after the retry time it is given.
  local exp = now + math.max(retry, 0) + ticketTTL
  redis.call('ZADD', ticketsKey, s(exp), ticket)
  redis.call('HSET', infoKey, ticket, s(arrival) .. ' ' .. s(tokens))
  extend(ticketsKey, exp - now)
  extend(infoKey, exp - now)
  for _, b in ipairs(B) do
    if b.wait then
      redis.call('ZADD', b.qk, s(arrival), ticket)
      extend(b.qk, exp - now)
    end
  end
  return deny(i, dim, retry, true)
end

-- Admit: charge every budget.
for _, b in ipairs(B) do
  if b.win then
    local c = b.lo + N
    redis.call('HINCRBY', b.wk, 't' .. s(c), s(tokens))
    redis.call('HINCRBY', b.wk, 'r' .. s(c), 1)
    b.T, b.R = b.T + tokens, b.R + 1
    redis.call('HSET', b.wk, 'lo', s(b.lo), 'T', s(b.T), 'R', s(b.R))
    redis.call('PEXPIRE', b.wk, s((N + 2) * width))
  end
  if b.days then
    b.used = b.used + tokens
    redis.call('HSET', b.dk, 'day', s(day), 'n', s(b.used))
    redis.call('PEXPIRE', b.dk, s(2 * DAY))
  end
  if b.slots then
    redis.call('ZADD', b.ck, s(now + leaseTTL), lease)
    extend(b.ck, leaseTTL)
  end
  if live then redis.call('ZREM', b.qk, ticket) end
end
dropTicket()
redis.call('ZADD', leasesKey, s(now), lease)
redis.call('ZREMRANGEBYSCORE', leasesKey, '-inf', s(now - retention))
redis.call('PEXPIRE', leasesKey, s(retention))

local remT, remR, reset = remaining()
return {1, 0, '', 0, remT, remR, reset, now, ''}
