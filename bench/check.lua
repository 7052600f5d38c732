-- wrk script for bench/load.sh: counts every response that is not the expected
-- one.
-- Arguments: expected status; the exact expected body (ignored for a 3xx: a
-- redirect to sign-in is checked by its Location instead); the Cookie header (""
-- for none); optionally one more request header, "Name: value" (a bearer
-- token's Authorization, say).
-- The upstream's body names the X-Forwarded-User it received and whether the
-- portcullis session cookie reached it, so comparing the whole body catches a
-- proxy that answers fast but forwards the wrong request.
--
-- A Set-Cookie for a cookie we send replaces it, as a browser would, and is
-- counted ("refreshed"). The benchmark does not exercise this: portcullis only
-- re-seals the cookie with an idle_timeout, which bench/load.sh leaves unset,
-- and wrk hands this script one Set-Cookie per response (the last), so a
-- refreshed session in several chunks could not be followed anyway.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function build()
  -- A browser's navigation: portcullis answers it with a redirect to sign-in,
  -- where an API client would get a 401.
  local headers = { ["Accept"] = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8" }
  local pairs_ = {}
  for _, name in ipairs(cookie_names) do
    table.insert(pairs_, name .. "=" .. cookies[name])
  end
  if #pairs_ > 0 then
    headers["Cookie"] = table.concat(pairs_, "; ")
  end
  if extra_name then
    headers[extra_name] = extra_value
  end
  req = wrk.format("GET", "/", headers)
end

function init(args)
  expected_status = tonumber(args[1])
  expected_body = args[2] or ""
  expect_redirect = expected_status >= 300 and expected_status < 400
  cookies, cookie_names = {}, {}
  for pair in string.gmatch(args[3] or "", "[^;%s][^;]*") do
    local name, value = string.match(pair, "^([^=]+)=(.*)$")
    if name then
      cookies[name] = value
      table.insert(cookie_names, name)
    end
  end
  if args[4] and args[4] ~= "" then
    extra_name, extra_value = string.match(args[4], "^([^:]+):%s*(.*)$")
  end
  good, bad, refreshed, first_bad = 0, 0, 0, ""
  build()
end

function request()
  return req
end

local function header(headers, name)
  return headers[name] or headers[string.lower(name)]
end

-- A Set-Cookie for one of the cookies we send replaces it; a deletion is a failure
-- (the session was refused) and shows up as a wrong status anyway.
local function refresh(set_cookie)
  local name, value, rest = string.match(set_cookie, "^([^=]+)=([^;]*)(.*)$")
  if name and cookies[name] and not string.find(rest, "Max-Age=0", 1, true) then
    cookies[name] = value
    refreshed = refreshed + 1
    build()
  end
end

function response(status, headers, body)
  local ok = status == expected_status
  if ok and not expect_redirect then
    ok = body == expected_body
  elseif ok then
    local location = header(headers, "Location") or ""
    ok = string.find(location, "/oauth2/sign_in?rd=", 1, true) ~= nil
  end
  if ok then
    good = good + 1
  else
    bad = bad + 1
    if first_bad == "" then
      -- status/length/the body's start, with nothing that could end the RESULT
      -- field (spaces) or read as another field (=).
      local start = string.gsub(string.sub(body or "", 1, 60), "[^%w%-_.,:<>@]", "_")
      first_bad = status .. "/" .. #(body or "") .. "/" .. start
    end
  end
  local set_cookie = header(headers, "Set-Cookie")
  if set_cookie then
    refresh(set_cookie)
  end
end

function done(summary, latency, requests)
  local good_, bad_, refreshed_, first = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    good_ = good_ + t:get("good")
    bad_ = bad_ + t:get("bad")
    refreshed_ = refreshed_ + t:get("refreshed")
    if first == "" then first = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d good=%d bad=%d refreshed=%d socket_errors=%d first_bad=%s\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    good_, bad_, refreshed_, e.connect + e.read + e.write + e.timeout, first == "" and "-" or first))
end
