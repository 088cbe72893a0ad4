-- Give a lease back without filling (the read failed or the value cannot be cached).
-- Returns 1 when the caller's lease was removed, 0 when it had already gone.
local lease_key = KEYS[1]
local token = ARGV[1]

if redis.call("GET", lease_key) == token then
  return redis.call("DEL", lease_key)
end
return 0
