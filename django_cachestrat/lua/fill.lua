-- Store a value only while the caller's lease still stands (compare-and-set).
-- Returns 1 when stored, 0 when the lease was lost (an invalidation came first).
local value_key = KEYS[1]
local lease_key = KEYS[2]
local token = ARGV[1]
local payload = ARGV[2]
local ttl_ms = ARGV[3]

-- NOTE: every invalidation deletes the lease, so a fill whose database read began before
-- an invalidation is dropped here: this is what keeps stale rows out of the cache.
if redis.call("GET", lease_key) ~= token then
  return 0
end
redis.call("SET", value_key, payload, "PX", ttl_ms)
redis.call("DEL", lease_key)
return 1
