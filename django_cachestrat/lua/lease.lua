-- Read a value, or take the lease to fill it (one atomic step, so no reader can miss the
-- value and then take a lease that a fill has just released).
-- Returns the value if present, 1 if the lease was taken, 0 if another caller holds it.
local value_key = KEYS[1]
local lease_key = KEYS[2]
local token = ARGV[1]
local lease_ms = ARGV[2]
local discard = ARGV[3]
local refresh = ARGV[4]

local value = redis.call("GET", value_key)
-- NOTE: in refresh mode (early refresh) the cached value stays for everyone else while
-- the lease holder recomputes it; only the lease is taken.
if value and value ~= discard and refresh ~= "1" then
  return value
end
-- NOTE: a value the caller could not use (corrupt, old generation) is removed only if it
-- is still the very value the caller saw; a fresh fill is never lost.
if value and value == discard then
  redis.call("DEL", value_key)
end
if redis.call("SET", lease_key, token, "NX", "PX", lease_ms) then
  return 1
end
return 0
