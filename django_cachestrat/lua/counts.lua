-- Read a stripe's pending and claimed deltas for some counters in one atomic step.
-- Returns {version, claim or false, {pending values}, {claimed values}}.
local pending_key = KEYS[1]
local claimed_key = KEYS[2]
local claim_key = KEYS[3]
local version_key = KEYS[4]

local version = redis.call("GET", version_key) or "0"
local claim = redis.call("GET", claim_key)
local pending = redis.call("HMGET", pending_key, unpack(ARGV))
local claimed = {}
if claim then
  claimed = redis.call("HMGET", claimed_key, unpack(ARGV))
end
return {version, claim, pending, claimed}
