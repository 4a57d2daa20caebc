-- trim.lua: trim a stream to its retention, never past what some group still needs.
--
-- The floor of each group is its oldest pending entry, or, with nothing pending, the entry after
-- its last delivered one. Only entries below every group's floor may go, oldest first, and only
-- while they are beyond max_len or older than max_age. Works without MINID (Redis 6.0).
--
-- KEYS[1]  stream                        KEYS[2]  stats hash ({name}:stats), for dead letters
-- ARGV[1]  max_len, or "" for none      ARGV[2]  oldest time kept in ms, or "" for none
-- ARGV[3]  at most this many entries removed per call
-- ARGV[4]  "1" when the stream holds dead letters: each removed one leaves its stage's tally
-- ARGV[5]  entries from this ms on are kept whatever retention says, or "" (a last stage's
--          output: its entries are jobs' results, which live as long as result_ttl)
-- Returns the number of entries removed.

local stream = KEYS[1]
local len = redis.call("XLEN", stream)
if len == 0 then return 0 end

local function parse(id)
  local ms, seq = string.match(id, "^(%d+)-(%d+)$")
  return tonumber(ms), tonumber(seq)
end

local function below(id, floor_ms, floor_seq)
  local ms, seq = parse(id)
  return ms < floor_ms or (ms == floor_ms and seq < floor_seq)
end

local floor_ms, floor_seq = math.huge, 0
local function lower_floor(ms, seq)
  if ms < floor_ms or (ms == floor_ms and seq < floor_seq) then floor_ms, floor_seq = ms, seq end
end

for _, info in ipairs(redis.call("XINFO", "GROUPS", stream)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if tonumber(fields["pending"]) > 0 then
    local summary = redis.call("XPENDING", stream, fields["name"])
    lower_floor(parse(summary[2]))
  else
    local ms, seq = parse(fields["last-delivered-id"])
    lower_floor(ms, seq + 1)
  end
end

if ARGV[5] and ARGV[5] ~= "" then lower_floor(tonumber(ARGV[5]), 0) end

local limit = tonumber(ARGV[3])
local excess = 0
if ARGV[1] ~= "" then excess = math.max(len - tonumber(ARGV[1]), 0) end
local oldest_kept = nil
if ARGV[2] ~= "" then oldest_kept = tonumber(ARGV[2]) end
if excess == 0 and not oldest_kept then return 0 end

local wanted = math.min(limit, excess)
if oldest_kept then wanted = limit end
if wanted == 0 then return 0 end

local removable = 0
local entries = redis.call("XRANGE", stream, "-", "+", "COUNT", wanted)
for i, entry in ipairs(entries) do
  local id = entry[1]
  if not below(id, floor_ms, floor_seq) then break end
  local too_many = i <= excess
  local too_old = oldest_kept ~= nil and parse(id) < oldest_kept
  if not (too_many or too_old) then break end
  removable = i
end
if removable > 0 then redis.call("XTRIM", stream, "MAXLEN", len - removable) end
if removable > 0 and ARGV[4] == "1" then
  local by_stage = {}
  for i = 1, removable do
    local fields = entries[i][2]
    for f = 1, #fields, 2 do
      if fields[f] == "stage" then
        by_stage[fields[f + 1]] = (by_stage[fields[f + 1]] or 0) + 1
        break
      end
    end
  end
  for stage, count in pairs(by_stage) do
    redis.call("HINCRBY", KEYS[2], "dead." .. stage, -count)
  end
end
return removable
