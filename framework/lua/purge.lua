-- purge.lua: delete dead letters for good, and count them out of their stage's tally.
--
-- KEYS[1]  dead stream ({name}:dead)    KEYS[2]  stats hash ({name}:stats: dead.STAGE counts)
-- ARGV     pairs of (dead entry id, stage)
-- A letter already gone (re-driven or purged meanwhile) is not counted twice.
-- Returns the number of letters deleted.

local deleted = 0
for i = 1, #ARGV, 2 do
  if redis.call("XDEL", KEYS[1], ARGV[i]) == 1 then
    deleted = deleted + 1
    redis.call("HINCRBY", KEYS[2], "dead." .. ARGV[i + 1], -1)
  end
end
return deleted
