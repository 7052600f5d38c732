-- wrk script for bench/shapes/auth.sh: like check.lua, but each request carries
-- the next value from a file, one a line, and none is sent twice: a new bearer
-- token per request (a signature check each, no cached verdict), or a new
-- session cookie per request (a session the proxy has not cached).
-- Arguments: expected status; the exact expected body; the file; the header
-- name ("Authorization", "Cookie"); a prefix for each value ("Bearer ", or "").
-- When the file runs out the thread stops (wrk's thread:stop()), answers still
-- in flight are not counted, and the file named by an optional sixth argument
-- is created: the caller then ends wrk with SIGINT (on which it reports at once)
-- instead of waiting out its duration. The RESULT's duration_us is then the
-- time from the first request to the last answer counted, measured here (wrk's
-- own would include the wait).
-- Run with one thread (wrk -t1): values are never shared between threads.
-- Its RESULT line has check.lua's fields (requests = answers checked) and
-- used (values sent) and values (in the file).

local threads = {}

local ffi = require("ffi")
ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } check_tokens_timespec;
  int clock_gettime(int clock, check_tokens_timespec *ts);
]])
local timespec = ffi.new("check_tokens_timespec")

-- CLOCK_MONOTONIC, in µs.
local function now_us()
  ffi.C.clock_gettime(1, timespec)
  return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

function setup(thread)
  table.insert(threads, thread)
  if #threads > 1 then
    error("check_tokens.lua: run wrk with one thread (-t1)")
  end
end

function init(args)
  expected_status = tonumber(args[1])
  expected_body = args[2] or ""
  local name, prefix = args[4], args[5] or ""
  values = {}
  for line in io.lines(args[3]) do
    if line ~= "" then
      table.insert(values, line)
    end
  end
  -- Made up front: building them while the server waits would slow the client.
  reqs = {}
  for i, value in ipairs(values) do
    reqs[i] = wrk.format("GET", "/", {
      ["Accept"] = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
      [name] = prefix .. value,
    })
  end
  values_n = #values
  values = nil
  done_file = args[6]
  used, stopped = 0, false
  first_us, last_us = 0, 0
  good, bad, first_bad = 0, 0, ""
end

function request()
  if used >= values_n then
    -- Out of values: stop; this request repeats one and is not counted.
    if not stopped then
      stopped = true
      wrk.thread:stop()
      if done_file then
        io.open(done_file, "w"):close()
      end
    end
    return reqs[1]
  end
  if used == 0 then
    first_us = now_us()
  end
  used = used + 1
  return reqs[used]
end

function response(status, headers, body)
  if stopped then
    return
  end
  last_us = now_us()
  if status == expected_status and body == expected_body then
    good = good + 1
  else
    bad = bad + 1
    if first_bad == "" then
      local start = string.gsub(string.sub(body or "", 1, 60), "[^%w%-_.,:<>@]", "_")
      first_bad = status .. "/" .. #(body or "") .. "/" .. start
    end
  end
end

function done(summary, latency, requests)
  local t = threads[1]
  local e = summary.errors
  local good_, bad_ = t:get("good"), t:get("bad")
  local first = t:get("first_bad")
  local duration = summary.duration
  if t:get("stopped") then
    duration = t:get("last_us") - t:get("first_us")
  end
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d good=%d bad=%d refreshed=0 socket_errors=%d first_bad=%s used=%d values=%d\n",
    good_ + bad_, duration, latency:percentile(50), latency:percentile(99),
    good_, bad_, e.connect + e.read + e.write + e.timeout, first == "" and "-" or first,
    t:get("used"), t:get("values_n")))
end
