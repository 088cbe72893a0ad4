-- Claim a stripe's pending increments as one batch, or reclaim a batch whose flusher died.
-- Returns {0} when there is nothing to do, else {1 (new) or 2 (reclaimed), batch id,
-- field1, delta1, field2, delta2, ...}.
local pending_key = KEYS[1]
local claimed_key = KEYS[2]
local claim_key = KEYS[3]
local version_key = KEYS[4]
local batch_id = ARGV[1]
local now_ms = tonumber(ARGV[2])
local reclaim_after_ms = tonumber(ARGV[3])

-- {kind, id, field1, delta1, ...}: the claimed batch as the caller reads it.
local function batch(kind, id)
  local result = {kind, id}
  for _, item in ipairs(redis.call("HGETALL", claimed_key)) do
    table.insert(result, item)
  end
  return result
end

local current = redis.call("GET", claim_key)
if current then
  -- NOTE: one batch per stripe at a time; a newer claim waits until this one is
  -- acknowledged, which is what lets readers tell applied batches from pending ones.
  local id, claimed_at = string.match(current, "^(.*):(%d+)$")
  if now_ms - tonumber(claimed_at) < reclaim_after_ms then
    return {0}
  end
  redis.call("SET", claim_key, id .. ":" .. now_ms)
  return batch(2, id)
end
if redis.call("EXISTS", pending_key) == 0 then
  return {0}
end
redis.call("RENAME", pending_key, claimed_key)
redis.call("SET", claim_key, batch_id .. ":" .. now_ms)
redis.call("INCR", version_key)
return batch(1, batch_id)
