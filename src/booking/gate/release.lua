-- Deletes the seat keys (KEYS) that ARGV[1] still owns; returns how many.
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
