-- Add to a pending counter (write-behind) and report when the stripe wants a flush.
-- Returns {pending entries in the stripe (0 when not counted), 1 if the caller should
-- trigger a flush else 0}, or {-1, 0} for an increment already applied (a retry, or one
-- cancelled meanwhile).
local pending_key = KEYS[1]
local throttle_key = KEYS[2]
local sequence_key = KEYS[3]
local field = ARGV[1]
local by = ARGV[2]
local batch_size = tonumber(ARGV[3])
local throttle_ms = ARGV[4]
local sequence = ARGV[5]
local keep_ms = ARGV[6]

-- NOTE: each client thread numbers its increments per stripe; a number at or below the
-- last one seen is a duplicate. This is what makes a lost reply safe to compensate.
-- SET ... GET records this number and reads the last one in a single call (this is the
-- hot path: each call from Lua costs about a microsecond); a duplicate puts it back.
local last = redis.call("SET", sequence_key, sequence, "PX", keep_ms, "GET")
if last and tonumber(sequence) <= tonumber(last) then
  redis.call("SET", sequence_key, last, "PX", keep_ms)
  return {-1, 0}
end
local total = redis.pcall("HINCRBY", pending_key, field, by)
if type(total) == "table" and total.err then
  -- NOTE: the sum would pass 64 bits: the number must not stay recorded either, so the
  -- settle call knows the increment was not applied.
  if last then
    redis.call("SET", sequence_key, last, "PX", keep_ms)
  else
    redis.call("DEL", sequence_key)
  end
  return total
end
-- NOTE: only an increment that made a new entry can fill the stripe up to its batch size
-- (a total equal to `by`: a new entry, or one back from zero, which is counted too).
if total ~= tonumber(by) then
  return {0, 0}
end
local size = redis.call("HLEN", pending_key)
-- NOTE: the throttle key makes one caller per second trigger the flush, not every caller
-- past the threshold.
if size >= batch_size and redis.call("SET", throttle_key, "1", "NX", "PX", throttle_ms) then
  return {size, 1}
end
return {size, 0}
