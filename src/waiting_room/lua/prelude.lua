local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function num(v) return tonumber(v) or 0 end
-- Which life of the room's Redis state this is: made when the room has none (a new room, or
-- Redis lost its data), from Redis time in microseconds. Tickets and admissions carry it, so
-- nothing issued before a loss counts after it. Whatever is left of an earlier life without
-- its meta (a partial eviction) is dropped, so the counters start true.
local function room_epoch(meta, rest)
  local e = redis.call('HGET', meta, 'epoch')
  if e then return e end
  if redis.call('EXISTS', meta) == 0 then
    for _, k in ipairs(rest) do redis.call('DEL', k) end
  end
  local t = redis.call('TIME')
  e = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('HSET', meta, 'epoch', e)
  return e
end
-- Draws the lottery once the opening time has come: the lobby, ordered by the random number
-- each early arrival drew, becomes the head of the queue and never changes again.
local function open_if_due(meta, lobby, now, opens_at)
  if redis.call('HGET', meta, 'opened') == '1' then return true end
  if now < opens_at then return false end
  local n = redis.call('ZCARD', lobby)
  redis.call('HSET', meta, 'opened', '1', 'opened_at', now, 'last_ms', now, 'credit', '0',
    'tail', n, 'lobby', n)
  return true
end
local function queue_number(meta, lobby, user, tk)
  local n = tonumber(string.sub(tk, 2)) or 0
  if string.sub(tk, 1, 1) == 'Q' then return n end
  if redis.call('HGET', meta, 'opened') ~= '1' then return 0 end
  local r = redis.call('ZRANK', lobby, user)
  if r then return r + 1 end
  return 0
end
local function status(meta, lobby, admits, user, tk, now)
  local q = queue_number(meta, lobby, user, tk)
  local m = redis.call('HMGET', meta, 'opened', 'lobby_joined', 'tail', 'admitted', 'epoch')
  local a = num(m[4])
  local at = 0
  if q > 0 and q <= a then
    local r = redis.call('ZRANGEBYSCORE', admits, q, '+inf', 'LIMIT', 0, 1)
    if r[1] then at = num(r[1]) end
  end
  return {tk, q, a, at, num(m[2]), num(m[1]), now, num(m[3]), num(m[5])}
end
