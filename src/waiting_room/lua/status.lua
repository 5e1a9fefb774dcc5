-- A ticket of an earlier life of the room (before Redis lost its data) is unknown here.
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[3] then return false end
return status(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now_ms())
