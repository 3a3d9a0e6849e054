"""The Lua scripts of the lease protocol. Every key of one stream carries the hash tag
``{type:id}``; the global ``meta`` hash (epoch, ready) is the one key outside it.

Key layout for stream S (``k`` = ``fenced:{S}``): ``k:lease`` "owner token" with a TTL;
``k:open`` the token of a holder that has not released cleanly; ``k:ctr`` the last token
handed out; ``k:q`` the fair queue of waiter ids; ``k:w:<waiter>`` a waiter's heartbeat;
``k:proj`` the projected state, a hash whose ``data`` field is read on acquire.
"""

ACQUIRE = """
-- KEYS: 1 lease, 2 open, 3 ctr, 4 q, 5 proj, 6 meta, 7 waiter heartbeat
-- ARGV: 1 owner, 2 ttl ms, 3 waiter id, 4 heartbeat ttl ms, 5 require ready (0/1),
--       6 wake channel prefix
-- Returns {1, token, takeover, proj} when granted;
--         {0, ms until the lease expires} when someone else holds it or is ahead in line;
--         {-1, 'NOBOOT'} without an epoch; {-2, 'NOTREADY'} before the projection is ready.
local epoch = redis.call('HGET', KEYS[6], 'epoch')
if not epoch then return {-1, 'NOBOOT'} end
if ARGV[5] == '1' and redis.call('HGET', KEYS[6], 'ready') ~= epoch then
  return {-2, 'NOTREADY'}
end
local me = ARGV[3]
redis.call('SET', KEYS[7], '1', 'PX', ARGV[4])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 or ttl == -1 then
  if redis.call('LPOS', KEYS[4], me) == false then redis.call('RPUSH', KEYS[4], me) end
  return {0, ttl}
end
-- the lease is free: serve the oldest live waiter first
while true do
  local head = redis.call('LINDEX', KEYS[4], 0)
  if not head or head == me then break end
  local hb = string.gsub(KEYS[7], '[^:]*$', '') .. head
  if redis.call('EXISTS', hb) == 1 then
    if redis.call('LPOS', KEYS[4], me) == false then redis.call('RPUSH', KEYS[4], me) end
    return {0, 0}
  end
  redis.call('LPOP', KEYS[4])
end
if redis.call('LINDEX', KEYS[4], 0) == me then redis.call('LPOP', KEYS[4]) end
redis.call('DEL', KEYS[7])
local token = redis.call('INCR', KEYS[3])
local base = tonumber(epoch) * 4294967296
if token <= base then
  token = base + 1
  redis.call('SET', KEYS[3], string.format('%.0f', token))
end
local tok = string.format('%.0f', token)
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. tok, 'PX', ARGV[2])
local takeover = 0
if redis.call('EXISTS', KEYS[2]) == 1 then takeover = 1 end
redis.call('SET', KEYS[2], tok)
return {1, tok, takeover, redis.call('HGET', KEYS[5], 'data')}
"""

RELEASE = """
-- KEYS: 1 lease, 2 open, 3 q
-- ARGV: 1 owner, 2 token, 3 clean (0/1), 4 wake channel prefix
-- Returns 1 if the lease was ours and is now released, 0 if it was not ours any more.
-- A clean release also clears the 'open' marker; a dirty one leaves it, so the next
-- holder is told takeover=1 and fences. The oldest waiter is woken either way.
local mine = redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2]
if mine then redis.call('DEL', KEYS[1]) end
if mine and ARGV[3] == '1' and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
local head = redis.call('LINDEX', KEYS[3], 0)
if head then
  local replica = string.match(head, '^[^/]*')
  redis.call('PUBLISH', ARGV[4] .. replica, head)
end
if mine then return 1 end
return 0
"""

RENEW = """
-- KEYS: 1 lease
-- ARGV: 1 owner, 2 token, 3 ttl ms
-- Returns 1 if the lease is still ours (its TTL is reset), 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

RAISE_FLOOR = """
-- KEYS: 1 ctr
-- ARGV: 1 floor (a token seen in the log)
-- Returns the counter after the call: never below the floor, never lowered.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if cur < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return string.format('%.0f', cur)
"""

LEAVE_QUEUE = """
-- KEYS: 1 q, 2 waiter heartbeat
-- ARGV: 1 waiter id, 2 wake channel prefix
-- Removes a waiter that gave up; wakes the next one if it was at the head. Returns 1.
local head = redis.call('LINDEX', KEYS[1], 0)
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('DEL', KEYS[2])
if head == ARGV[1] then
  local nxt = redis.call('LINDEX', KEYS[1], 0)
  if nxt then redis.call('PUBLISH', ARGV[2] .. string.match(nxt, '^[^/]*'), nxt) end
end
return 1
"""

SET_EPOCH = """
-- KEYS: 1 meta
-- ARGV: 1 candidate epoch
-- Raises meta.epoch to the candidate if higher (never lowers it); returns the epoch.
local cur = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
  return ARGV[1]
end
return tostring(cur)
"""
