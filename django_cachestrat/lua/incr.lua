-- Add to a pending counter (write-behind) and report when the stripe wants a flush.
-- Returns {pending entries in the stripe, 1 if the caller should trigger a flush else 0},
-- or {-1, 0} for an increment already applied (a retry, or one cancelled meanwhile).
local pending_key = KEYS[1]
local throttle_key = KEYS[2]
local sequence_key = KEYS[3]
local field = ARGV[1]
local by = ARGV[2]
local batch_size = tonumber(ARGV[3])
local throttle_ms = ARGV[4]
local sequence = tonumber(ARGV[5])
local keep_ms = ARGV[6]

-- NOTE: each client thread numbers its increments per stripe; a number at or below the
-- last one seen is a duplicate. This is what makes a lost reply safe to compensate.
local last = tonumber(redis.call("GET", sequence_key) or "0")
if sequence <= last then
  return {-1, 0}
end
-- NOTE: HINCRBY first: if it fails (the sum would pass 64 bits), the number is not
-- recorded either, so the settle call knows the increment was not applied.
redis.call("HINCRBY", pending_key, field, by)
redis.call("SET", sequence_key, sequence, "PX", keep_ms)
local size = redis.call("HLEN", pending_key)
-- NOTE: the throttle key makes one caller per second trigger the flush, not every caller
-- past the threshold.
if size >= batch_size and redis.call("SET", throttle_key, "1", "NX", "PX", throttle_ms) then
  return {size, 1}
end
return {size, 0}
