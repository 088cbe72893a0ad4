-- Add to a pending counter (write-behind) and report when the stripe wants a flush.
-- Returns {pending entries in the stripe, 1 if the caller should trigger a flush else 0}.
local pending_key = KEYS[1]
local throttle_key = KEYS[2]
local field = ARGV[1]
local by = ARGV[2]
local batch_size = tonumber(ARGV[3])
local throttle_ms = ARGV[4]

redis.call("HINCRBY", pending_key, field, by)
local size = redis.call("HLEN", pending_key)
-- NOTE: the throttle key makes one caller per second trigger the flush, not every caller
-- past the threshold.
if size >= batch_size and redis.call("SET", throttle_key, "1", "NX", "PX", throttle_ms) then
  return {size, 1}
end
return {size, 0}
