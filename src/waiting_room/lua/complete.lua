if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[5]) ~= ARGV[13] then
  return {'lost'}
end
if redis.call('HGET', KEYS[3], 'status') == 'QUEUED' then
  local n = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[9])
  redis.call('HSET', KEYS[3], 'status', ARGV[4], 'hold_id', ARGV[5], 'error_code', ARGV[6],
    'error_message', ARGV[7], 'answered_ms', ARGV[8], 'answer', n)
  redis.call('PEXPIRE', KEYS[3], ARGV[9])
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[10], 'done ' .. ARGV[11])
redis.call('PEXPIRE', KEYS[1], ARGV[12])
return next_entry(KEYS[2], ARGV[2], ARGV[1])
