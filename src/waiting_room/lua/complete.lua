if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[4]) ~= ARGV[7] then
  return {'lost'}
end
-- One answer per request hash KEYS[5..], in queue order; its six arguments start at a.
for i = 5, #KEYS do
  local a = 10 + (i - 5) * 6
  if redis.call('HGET', KEYS[i], 'status') == 'QUEUED' then
    local n = redis.call('INCR', KEYS[3])
    redis.call('PEXPIRE', KEYS[3], ARGV[4])
    redis.call('HSET', KEYS[i], 'status', ARGV[a + 1], 'hold_id', ARGV[a + 2],
      'error_code', ARGV[a + 3], 'error_message', ARGV[a + 4], 'answered_ms', ARGV[3],
      'answer', n)
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  end
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[a])
  redis.call('XDEL', KEYS[2], ARGV[a])
  redis.call('PUBLISH', ARGV[5], 'done ' .. ARGV[a + 5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return next_entries(KEYS[2], ARGV[2], ARGV[1], ARGV[8], ARGV[9])
