local function next_entry(stream, group, consumer)
  local function first(r)
    if r and r[1] and r[1][2] and r[1][2][1] then return r[1][2][1] end
    return nil
  end
  local e = first(redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1,
    'STREAMS', stream, '0'))
  if not e then
    e = first(redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1,
      'STREAMS', stream, '>'))
  end
  if not e then return {'empty'} end
  local out = {'entry', e[1]}
  if e[2] then
    for _, v in ipairs(e[2]) do table.insert(out, v) end
  end
  return out
end
