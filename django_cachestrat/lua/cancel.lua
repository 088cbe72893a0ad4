-- Settle an increment whose reply was lost and which was written to the database instead:
-- undo it if Redis applied it, else make sure it never will be.
-- Returns 1 when it was undone, 0 when it had not been applied.
local pending_key = KEYS[1]
local sequence_key = KEYS[2]
local field = ARGV[1]
local by = tonumber(ARGV[2])
local sequence = tonumber(ARGV[3])
local keep_ms = ARGV[4]

local last = tonumber(redis.call("GET", sequence_key) or "0")
if sequence > last then
  -- NOTE: numbers only grow per client, so marking this one seen rejects a late arrival.
  redis.call("SET", sequence_key, sequence, "PX", keep_ms)
  return 0
end
redis.call("HINCRBY", pending_key, field, -by)
return 1
