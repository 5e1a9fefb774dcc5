local meta, lobby, admits = KEYS[1], KEYS[2], KEYS[3]
room_epoch(meta, {lobby, admits, KEYS[4]})
local now = now_ms()
local let_in = 0
if open_if_due(meta, lobby, now, tonumber(ARGV[1])) then
  local m = redis.call('HMGET', meta, 'last_ms', 'credit', 'admitted', 'tail')
  local last, credit, a, tail = num(m[1]), num(m[2]), num(m[3]), num(m[4])
  local dt = math.min(now - last, tonumber(ARGV[3]))
  if dt > 0 then
    credit = credit + tonumber(ARGV[2]) * dt / 1000
    local whole = math.floor(credit)
    credit = credit - whole
    let_in = math.min(whole, tail - a)
    if let_in > 0 then
      a = a + let_in
      redis.call('ZADD', admits, a, now)
      redis.call('HSET', meta, 'admitted', a)
    end
    redis.call('HSET', meta, 'last_ms', now, 'credit', credit)
    for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ARGV[4]) end
  end
end
local m = redis.call('HMGET', meta, 'opened', 'admitted', 'tail', 'lobby_joined', 'epoch')
return {num(m[1]), num(m[2]), num(m[3]), num(m[4]), let_in, now, num(m[5])}
