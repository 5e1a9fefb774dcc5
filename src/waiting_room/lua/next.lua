if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'lost'} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return next_entries(KEYS[2], ARGV[3], ARGV[1], ARGV[4])
