local meta, tickets, lobby, admits = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user = ARGV[1]
room_epoch(meta, {tickets, lobby, admits})
local now = now_ms()
local opened = open_if_due(meta, lobby, now, tonumber(ARGV[3]))
local tk = redis.call('HGET', tickets, user)
if tk then
  local st = status(meta, lobby, admits, user, tk, now)
  -- Still waiting, or admitted and inside the window: the same ticket. Admitted and the
  -- window has passed: the turn is lost, and a new ticket goes to the back.
  if st[4] == 0 or now < st[4] + tonumber(ARGV[4]) then return st end
end
if opened then
  tk = 'Q' .. redis.call('HINCRBY', meta, 'tail', 1)
else
  tk = 'L' .. redis.call('HINCRBY', meta, 'lobby_joined', 1)
  redis.call('ZADD', lobby, ARGV[2], user)
end
redis.call('HSET', tickets, user, tk)
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ARGV[5]) end
return status(meta, lobby, admits, user, tk, now)
