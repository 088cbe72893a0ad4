-- Settle an increment whose reply was lost and which was written to the database instead:
-- undo it if Redis applied it, else make sure it never will be. Settling twice (a replayed
-- settle call) does nothing the second time.
-- Returns 1 when it was undone, 0 when it had not been applied, 2 when already settled.
local pending_key = KEYS[1]
local sequence_key = KEYS[2]
local settled_key = KEYS[3]
local field = ARGV[1]
local by = tonumber(ARGV[2])
local sequence = tonumber(ARGV[3])
local keep_ms = ARGV[4]

-- NOTE: the settle call is replayed until its reply arrives, so it may run more than
-- once; this mark makes it act once.
if not redis.call("SET", settled_key, "1", "NX", "PX", keep_ms) then
  return 2
end
-- NOTE: the client sends no other number under this sequence key after a lost reply (it
-- starts a new one), so the last number seen is either this one (applied) or lower.
local last = tonumber(redis.call("GET", sequence_key) or "0")
if sequence > last then
  redis.call("SET", sequence_key, sequence, "PX", keep_ms)  -- a late arrival is a duplicate
  return 0
end
redis.call("HINCRBY", pending_key, field, -by)
return 1
