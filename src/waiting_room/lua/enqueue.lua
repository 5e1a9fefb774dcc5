if ARGV[1] == '1' then
  local earlier = redis.call('GET', KEYS[3])
  if earlier then return {0, earlier} end
end
local n = redis.call('INCR', KEYS[4])
local entry = redis.call('XADD', KEYS[1], '*', 'request', ARGV[2], 'user', ARGV[3],
  'admin', ARGV[4], 'seats', ARGV[5])
redis.call('HSET', KEYS[2], 'user', ARGV[3], 'event', ARGV[8], 'seats', ARGV[5],
  'status', 'QUEUED', 'number', n, 'entry', entry, 'created_ms', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('PEXPIRE', KEYS[4], ARGV[7])
if ARGV[1] == '1' then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[7]) end
redis.call('PUBLISH', ARGV[9], 'work ' .. ARGV[10])
return {1, ARGV[2]}
