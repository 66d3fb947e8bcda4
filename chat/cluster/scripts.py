# -*- test-case-name: tests.test_cluster -*-
"""
What a cluster's nodes share in Redis: the names of the keys and channels,
and the Lua scripts that change them.

Every change to the registry is one script, so the checks and the change
are one atomic step however many nodes run them at once (L{JOIN}: the
capacity and the name). The scripts a client is told the outcome of carry
a deadline in Redis's clock (L{unless_late}): run later, after the client
was told they failed, they change nothing.
"""

from __future__ import annotations

from typing import Final

USERS: Final = "chat:users"
NODES: Final = "chat:nodes"
VERSION: Final = "chat:version"
EVENTS: Final = "chat:events"
BROADCASTS: Final = "chat:bcst"
PRESENCE: Final = "chat:presence"
NODE_PREFIX: Final = "chat:node:"
BANS: Final = "chat:bans"
MODERATION: Final = "chat:moderation"
HISTORY: Final = "chat:history"


def unless_late(deadline: str) -> str:
    """
    The first lines of a script that must not run past its deadline (in
    Redis's clock, seconds since the epoch; 0 for none): it then answers
    C{late} and changes nothing.
    """
    return f"""
local deadline, now = tonumber({deadline}), redis.call('TIME')
if deadline > 0 and tonumber(now[1]) + tonumber(now[2]) / 1000000 > deadline then
  return 'late'
end
"""


# KEYS: users, version, node's user set, nodes. ARGV: node, folded, display,
# capacity, deadline. A node swept from the cluster ('lapsed') registers no
# one until it has registered its own users again: no sweep would remove a
# user of a node outside the cluster, were the node to die meanwhile.
JOIN: Final = (
    unless_late("ARGV[5]")
    + f"""
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0 then return 'lapsed' end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 'full' end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 'taken' end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1] .. ' ' .. ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', '{EVENTS}', v .. ' join ' .. ARGV[1] .. ' ' .. ARGV[3])
return 'joined ' .. v
"""
)

# KEYS: users, version, node's user set. ARGV: node, folded.
LEAVE: Final = f"""
redis.call('SREM', KEYS[3], ARGV[2])
local held = redis.call('HGET', KEYS[1], ARGV[2])
if not held or string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', '{EVENTS}', v .. ' leave ' .. held)
return 1
"""

# KEYS: users, nodes, version. Removes the users of nodes whose lease expired.
SWEEP: Final = f"""
local removed = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', '{NODE_PREFIX}' .. node .. ':alive') == 0 then
    local set = '{NODE_PREFIX}' .. node .. ':users'
    for _, folded in ipairs(redis.call('SMEMBERS', set)) do
      local held = redis.call('HGET', KEYS[1], folded)
      if held and string.sub(held, 1, #node + 1) == node .. ' ' then
        redis.call('HDEL', KEYS[1], folded)
        local v = redis.call('INCR', KEYS[3])
        redis.call('PUBLISH', '{EVENTS}', v .. ' lost ' .. held)
        removed = removed + 1
      end
    end
    redis.call('DEL', set)
    redis.call('SREM', KEYS[2], node)
  end
end
return removed
"""

# KEYS: nodes, node's lease. ARGV: node, lease in ms. Renews the lease of a
# node that is still in the cluster: 0 if it was swept (its lease lapsed),
# then Redis's TIME.
RENEW: Final = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return {0, redis.call('TIME')} end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return {1, redis.call('TIME')}
"""

# KEYS: users, nodes, version, node's user set, node's lease.
# ARGV: node, lease in ms, capacity, deadline, then folded name and display
# name of each live user. Makes the registry hold exactly this node's live
# users as far as their names are free and the room has seats; returns the
# names that another node took meanwhile, those without a seat, those
# registered again and the versions at which they were, and Redis's TIME.
# Late, it changes nothing: the node, told it failed, tries again, and a late
# run would register users whose refusals (a BYE) nobody would ever send.
REASSERT: Final = (
    unless_late("ARGV[4]")
    + f"""
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[2])
local live, taken, full, added, versions = {{}}, {{}}, {{}}, {{}}, {{}}
for i = 5, #ARGV, 2 do live[ARGV[i]] = true end
for _, folded in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if not live[folded] then
    redis.call('SREM', KEYS[4], folded)
    local held = redis.call('HGET', KEYS[1], folded)
    if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
      redis.call('HDEL', KEYS[1], folded)
      local v = redis.call('INCR', KEYS[3])
      redis.call('PUBLISH', '{EVENTS}', v .. ' leave ' .. held)
    end
  end
end
for i = 5, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if not held and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
    table.insert(full, ARGV[i])
  elseif not held then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1] .. ' ' .. ARGV[i + 1])
    redis.call('SADD', KEYS[4], ARGV[i])
    local v = redis.call('INCR', KEYS[3])
    redis.call('PUBLISH', '{EVENTS}', v .. ' join ' .. ARGV[1] .. ' ' .. ARGV[i + 1])
    table.insert(added, ARGV[i])
    table.insert(versions, v)
  elseif string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
    table.insert(taken, ARGV[i])
  end
end
return {{taken, full, added, versions, redis.call('TIME')}}
"""
)

# KEYS: bans. ARGV: node, key, sanction (JSON), now, most bans, deadline.
# Expired bans are dropped first; a new ban past the bound is refused ('full').
BAN: Final = (
    unless_late("ARGV[6]")
    + f"""
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
  local ban = cjson.decode(value)
  if ban['until'] <= tonumber(ARGV[4]) then redis.call('HDEL', KEYS[1], ban.key) end
end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return 'full'
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', '{MODERATION}', ARGV[1] .. '\\nban\\n' .. ARGV[3])
return 'ok'
"""
)

# KEYS: bans. ARGV: node, key, deadline.
UNBAN: Final = (
    unless_late("ARGV[3]")
    + f"""
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('PUBLISH', '{MODERATION}', ARGV[1] .. '\\nunban\\n' .. ARGV[2])
return 'ok'
"""
)

# KEYS: history. ARGV: how many to keep, then the entries, oldest first.
KEEP: Final = """
for i = 2, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
return redis.call('LLEN', KEYS[1])
"""

# KEYS: users, version. The registry and the version it is at, atomically.
SNAPSHOT: Final = """
return {redis.call('GET', KEYS[2]) or '0', redis.call('HVALS', KEYS[1])}
"""
