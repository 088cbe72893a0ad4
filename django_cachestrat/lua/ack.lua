-- Acknowledge a batch the database has recorded: drop it from the stripe.
-- Returns 1 when acknowledged, 0 when the claim is no longer this batch's.
local claimed_key = KEYS[1]
local claim_key = KEYS[2]
local version_key = KEYS[3]
local batch_id = ARGV[1]

local current = redis.call("GET", claim_key)
if not current or string.sub(current, 1, string.len(batch_id) + 1) ~= batch_id .. ":" then
  return 0
end
redis.call("DEL", claimed_key, claim_key)
-- NOTE: readers compare this version before and after they read a row, so they notice a
-- batch that moved from "claimed" to "in the database" while they were reading.
redis.call("INCR", version_key)
return 1
