-- commit.lua: the exit of a batch of messages from a stage's pending list, in one atomic step.
--
-- For each message: check that this consumer still owns it (it is in our pending list), then
-- write its outputs, or its dead letter, or its delayed retry, XACK it and update its job hash.
-- A message we no longer own (reclaimed by another worker) is left alone: its late result is
-- dropped. Repeating the call after a lost reply is safe: committed messages are no longer ours.
-- A repeated call (ARGV[15]) also says which of those it committed itself the first time, so
-- that a lost reply is not reported as lost work: its `now` is the first call's, and a message
-- that is in nobody's pending list while its job hash has this stage's time at `now` was.
--
-- KEYS[1]  input stream            the stream the stage reads
-- KEYS[2]  output stream           {name}:STAGE
-- KEYS[3]  dead stream             {name}:dead
-- KEYS[4]  retry zset              {name}:retry
-- KEYS[5]  done stream             {name}:done
-- KEYS[6]  stats hash              {name}:stats: outputs, dead letters and waiting retries
--                                  counted by stage, so that status reads no payload
-- Job hashes are {name}:job:ID, built here from ARGV[8]: they share the pipeline's hash tag,
-- so they live in the same cluster slot as KEYS[1..5] (one key per message would cost more to
-- send than the rest of the commit).
--
-- ARGV[1]  group                   ARGV[5]  fan: groups reading the output (0: last stage)
-- ARGV[2]  consumer                ARGV[6]  result_ttl in seconds
-- ARGV[3]  now in ms               ARGV[7]  "1" when the input is a source (jobs may be new)
-- ARGV[4]  stage name              ARGV[8]  job key prefix, {name}:job:
-- ARGV[9], ARGV[10]  the lowest and highest message id of the batch (for the ownership query)
-- ARGV[11] n, the number of plain messages: one output payload, no trace (the common case)
-- ARGV[12] the other messages, JSON, or "": [[id, job, kind, trace, attempt, elapsed_ms, [args]], ...]
-- ARGV[13] the elapsed ms of every plain message when they are all the same, else ""
-- ARGV[14] "1" when every plain message is its own job (a source's bare entries), else "0"
-- ARGV[15] "1" when this call repeats one whose reply was lost, else "0"
--   kind E (emit): args are the output payloads     kind D (drop): no args
--   kind R (retry): due_ms, zset member            kind X (dead): data, error, traceback
--   kind S (skip: a retry meant for another stage): no args, no job accounting
-- ARGV[16..] the plain messages, as columns of n values each: ids; jobs ("" where the entry is
--   its own job; left out when ARGV[14] is "1"); elapsed ms (left out when ARGV[13] has it);
--   payloads. Columns, not one JSON document: Redis makes each argument a Lua string as it
--   reads the command, which costs less than cjson, and the XACK of a whole batch is then one
--   unpack() of the id column.
-- Returns {lost, committed_before}: the ids of messages that are not ours any more (taken over
-- by another consumer: their results are dropped), and, in a repeated call, of those this
-- consumer committed in the call whose reply was lost. {{}, {}} when every message was committed.
--
-- Cost matters here (each redis.call costs about as much as the command it runs): the plain
-- path makes one call per output and one or two per job hash, and passes numbers as strings
-- (a Lua number turned into a command argument goes through sprintf).

local input, output, dead, retry, done, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, consumer, now, stage = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fan, ttl, source, prefix = tonumber(ARGV[5]), ARGV[6], ARGV[7] == "1", ARGV[8]
local plain, others, same_time = tonumber(ARGV[11]), ARGV[12], ARGV[13]
-- Where each column starts (the n values of a column are at start + 1 .. start + n); false
-- for a column left out.
local ids = 15
local repeated = ARGV[15] == "1"
local jobs = ARGV[14] ~= "1" and ids + plain
local times = same_time == "" and (jobs or ids) + plain
local payloads = (times or jobs or ids) + plain
local call = redis.call
local none = {}
local at_field, ms_field = stage .. ".at", stage .. ".ms"
-- `result.<stage>.<message id>.<n>`: message ids are unique within a stream, not across two
-- last stages (both streams can have an entry 1700000000000-0), so the stage is part of it.
local result_field = "result." .. stage .. "."

-- Ownership: what is still pending for this consumer in the batch's span of ids, in one query
-- (a worker may hold many more messages than it commits at once: the span keeps this small).
-- mine[id]: true while ours, false once committed here (the same id twice commits once).
local mine = {}
for _, entry in ipairs(call("XPENDING", input, group, ARGV[9], ARGV[10], 1000000, consumer)) do
  mine[entry[1]] = true
end

-- Time this stage let go of the job's message (and, at the last stage, its result, under
-- `result_field`: unique, so no counter is needed); on a source stage also the job's
-- start: HSET answers how many fields are new, and an existing job hash always has `state`.
local function touch(jobkey, job, id, elapsed, extra)
  if not source and extra == none then  -- the common case, without building a table
    call("HSET", jobkey, at_field, now, ms_field, elapsed)
    return
  end
  local fields = {at_field, now, ms_field, elapsed}
  for _, value in ipairs(extra) do fields[#fields + 1] = value end
  if not source then
    call("HSET", jobkey, unpack(fields))
    return
  end
  fields[#fields + 1] = "state"
  fields[#fields + 1] = "running"
  if job == id then
    -- An entry that names no job is its own job, and this is its one exit from the source
    -- stage (a retry comes back as a new entry naming it): the job hash starts here, in one go.
    fields[#fields + 1] = "outstanding"
    fields[#fields + 1] = "1"
    fields[#fields + 1] = "submitted"
    fields[#fields + 1] = string.match(id, "^%d+")
    call("HSET", jobkey, unpack(fields))
    call("EXPIRE", jobkey, ttl)
    return
  end
  local added = call("HSET", jobkey, unpack(fields))
  if added == #fields / 2 then
    -- A job named by an entry but never submitted through us, or whose hash expired: it
    -- starts here.
    call("HSET", jobkey, "outstanding", "1", "submitted", now)
    call("EXPIRE", jobkey, ttl)
  end
end

local function finish(jobkey, job)
  local state = "done"
  if call("HEXISTS", jobkey, "failed") == 1 then state = "failed" end
  call("HSET", jobkey, "state", state, "finished", now, "outstanding", "0")
  call("EXPIRE", jobkey, ttl)
  call("XADD", done, "*", "job", job, "state", state)
end

-- One message left this stage and `spawned` entered the next stages.
local function settle(jobkey, job, spawned)
  if spawned == 1 then return end
  if call("HINCRBY", jobkey, "outstanding", spawned - 1) <= 0 then finish(jobkey, job) end
end

local function results(id, payloads)
  local fields = {}
  for n, payload in ipairs(payloads) do
    fields[#fields + 1] = result_field .. id .. "." .. n
    fields[#fields + 1] = payload
  end
  return fields
end

-- The last stage's common case in few calls: what the job has in flight and whether it failed,
-- then timing, results and (when this was the job's last message) its end, in one HSET.
local function last_stage_done(jobkey, job, id, elapsed, payload)
  local state = call("HMGET", jobkey, "outstanding", "failed")
  local left = (tonumber(state[1]) or 1) - 1  -- no hash (expired): this was its one message
  if left > 0 then
    call("HSET", jobkey, result_field .. id .. ".1", payload, at_field, now, ms_field, elapsed,
      "outstanding", tostring(left))
    return
  end
  local ending = "done"
  if state[2] then ending = "failed" end
  call("HSET", jobkey, result_field .. id .. ".1", payload, at_field, now, ms_field, elapsed,
    "state", ending, "finished", now, "outstanding", "0")
  call("EXPIRE", jobkey, ttl)
  call("XADD", done, "*", "job", job, "state", ending)
end

local lost = {}
local emitted, dead_lettered, retried = 0, 0, 0
local before = {}  -- committed by the call whose reply was lost

-- A message not ours: in a repeated call, ours already if no one holds it and its job says
-- this stage let go of it at this call's time; else another consumer's now.
local function not_ours(id, job)
  if repeated and #call("XPENDING", input, group, id, id, 1) == 0 then
    if job == nil or call("HGET", prefix .. job, at_field) == now then
      before[#before + 1] = id
      return
    end
  end
  lost[#lost + 1] = id
end

-- The plain messages: one payload out, no trace.
for i = 1, plain do
  local id = ARGV[ids + i]
  local owned = mine[id]
  if owned == nil then
    local job = id
    if jobs and ARGV[jobs + i] ~= "" then job = ARGV[jobs + i] end
    not_ours(id, job)
  elseif owned then
    mine[id] = false
    local job, elapsed, payload = id, same_time, ARGV[payloads + i]
    if jobs then
      job = ARGV[jobs + i]
      if job == "" then job = id end
    end
    if times then elapsed = ARGV[times + i] end
    call("XADD", output, "*", "job", job, "data", payload)
    emitted = emitted + 1
    local jobkey = prefix .. job
    if not source then
      if fan == 1 then
        call("HSET", jobkey, at_field, now, ms_field, elapsed)
      elseif fan == 0 then
        last_stage_done(jobkey, job, id, elapsed, payload)
      else
        call("HSET", jobkey, at_field, now, ms_field, elapsed)
        call("HINCRBY", jobkey, "outstanding", fan - 1)
      end
    elseif job == id and fan > 0 then
      -- A new job's one message went on to `fan` stages: it starts with that many in flight.
      call("HSET", jobkey, at_field, now, ms_field, elapsed, "state", "running",
        "outstanding", fan == 1 and "1" or tostring(fan), "submitted", string.match(id, "^%d+"))
      call("EXPIRE", jobkey, ttl)
    elseif fan == 0 then
      touch(jobkey, job, id, elapsed, {result_field .. id .. ".1", payload})
      settle(jobkey, job, 0)
    else
      touch(jobkey, job, id, elapsed, none)
      settle(jobkey, job, fan)
    end
  end
end

local acked = nil  -- nil: every plain message, and nothing else, was committed
if #lost > 0 or others ~= "" then
  acked = {}
  for i = 1, plain do
    local id = ARGV[ids + i]
    if mine[id] == false then acked[#acked + 1] = id end
  end
end

-- The other messages: several or no outputs, a trace, a retry, a dead letter, a skip.
if others ~= "" then
  for _, message in ipairs(cjson.decode(others)) do
    local id, job, kind, trace, attempt, elapsed, args =
      message[1], message[2], message[3], message[4], message[5], message[6], message[7]
    local jobkey = prefix .. job
    local owned = mine[id]
    if owned == nil then
      if kind == "S" then job = nil end  -- a skip touches no job: nobody else's result to lose
      not_ours(id, job)
    elseif owned then
      mine[id] = false
      acked[#acked + 1] = id
      elapsed = tostring(elapsed)
      if kind == "E" then
        emitted = emitted + #args
        for _, payload in ipairs(args) do
          if trace ~= "" then
            call("XADD", output, "*", "job", job, "data", payload, "trace", trace)
          else
            call("XADD", output, "*", "job", job, "data", payload)
          end
        end
        if fan == 0 then
          touch(jobkey, job, id, elapsed, results(id, args))
          settle(jobkey, job, 0)
        else
          touch(jobkey, job, id, elapsed, none)
          settle(jobkey, job, #args * fan)
        end
      elseif kind == "D" then
        touch(jobkey, job, id, elapsed, none)
        settle(jobkey, job, 0)
      elseif kind == "R" then
        retried = retried + 1
        call("ZADD", retry, args[1], args[2])
        touch(jobkey, job, id, elapsed, none)
      elseif kind == "X" then
        dead_lettered = dead_lettered + 1
        call("XADD", dead, "*", "stage", stage, "job", job, "id", id, "stream", input,
          "data", args[1], "error", args[2], "traceback", args[3],
          "attempts", attempt, "trace", trace, "failed_at", now)
        touch(jobkey, job, id, elapsed, none)
        call("HINCRBY", jobkey, "failed", 1)
        call("HSET", jobkey, "error", stage .. ": " .. args[2])
        settle(jobkey, job, 0)
      end
    end
  end
end

if emitted > 0 then call("HINCRBY", stats, "out." .. stage, emitted) end
if dead_lettered > 0 then call("HINCRBY", stats, "dead." .. stage, dead_lettered) end
if retried > 0 then call("HINCRBY", stats, "retry." .. stage, retried) end

if acked == nil then
  if plain > 0 then call("XACK", input, group, unpack(ARGV, ids + 1, ids + plain)) end
elseif #acked > 0 then
  call("XACK", input, group, unpack(acked))
end
return {lost, before}
