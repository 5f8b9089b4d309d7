"""The Lua scripts behind RedisBackend: each operation is one atomic server-side step.

An object is two plain strings: its bytes at ``P/key``, and its modification
time (Redis server time, integer milliseconds since the epoch) at
``P#modified/key``. Both get the same expiry, set and reset together, so
neither outlives the other. Scripts run atomically on the server, so no
reader sees an object without its time or a time without its object, and
they use the server's clock, so workers with skewed clocks agree on ages.

``ARGV`` ttl is in milliseconds; 0 means "no expiry" (an existing expiry is
removed, so an object's expiry always follows the backend that last wrote
or refreshed it).
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_EXPIRE = """
local function expire(key, ttl)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
local function stamp(key, now, ttl)
  if ttl > 0 then redis.call('SET', key, now, 'PX', ttl) else redis.call('SET', key, now) end
end
"""

STAT = (
    _NOW
    + """
-- KEYS: object, its time. Returns nil, or {size, modified ms}.
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local modified = tonumber(redis.call('GET', KEYS[2]) or '') or now
return {redis.call('STRLEN', KEYS[1]), modified}
"""
)
"""An object written by something else has no time: it counts as new (so gc keeps it)."""

PUT = (
    _NOW
    + _EXPIRE
    + """
-- KEYS: object, its time; ARGV: bytes, ttl. Returns 1 if created, 0 if it existed.
local ttl = tonumber(ARGV[2])
local created
if ttl > 0 then
  created = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl)
else
  created = redis.call('SET', KEYS[1], ARGV[1], 'NX')
end
if not created then return 0 end
stamp(KEYS[2], now, ttl)
return 1
"""
)

GET = """
-- KEYS: object; ARGV: max size (-1: none). Returns nil (missing), the size
-- (an integer: above the bound, not read) or the bytes.
local size = redis.call('STRLEN', KEYS[1])
if size == 0 and redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local bound = tonumber(ARGV[1])
if bound >= 0 and size > bound then return size end
return redis.call('GET', KEYS[1])
"""

TOUCH = (
    _NOW
    + _EXPIRE
    + """
-- KEYS: object, its time; ARGV: ttl. Returns 0 if the object is missing.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ttl = tonumber(ARGV[1])
expire(KEYS[1], ttl)
stamp(KEYS[2], now, ttl)
return 1
"""
)

MOVE = (
    _NOW
    + _EXPIRE
    + """
-- KEYS: source, its time, destination, its time; ARGV: the destination's ttl.
-- Never overwrites an existing destination (content-addressed: the same
-- bytes); it is refreshed instead and the source dropped. Returns 0 if the
-- source is missing (nothing changed).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('RENAMENX', KEYS[1], KEYS[3]) == 0 then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
local ttl = tonumber(ARGV[1])
expire(KEYS[3], ttl)
stamp(KEYS[4], now, ttl)
return 1
"""
)
