-- One wrk script for every workload, driven by environment variables:
--   BENCH_MODE    get | post | login | refresh
--   BENCH_PATH    request path (get, post)
--   BENCH_BODY    form body (post)
--   BENCH_AUTH    Authorization header value (post, login, refresh; optional for get)
--   BENCH_OUT     file that receives the JSON summary
-- login:   BENCH_AUTH_PATH (the /auth request with query), BENCH_COOKIE (the signed-in
--          session), BENCH_REDIRECT (form-encoded redirect_uri), BENCH_TOKEN_PATH
-- refresh: BENCH_TOKENS (one refresh token per line, each used once), BENCH_TOKEN_PATH
--
-- login and refresh count completed flows themselves (a login is an /auth redirect carrying a
-- code followed by a 200 token response holding an id_token); any other answer is `bad`.

local mode = os.getenv("BENCH_MODE") or "get"
local out_file = os.getenv("BENCH_OUT")
local auth = os.getenv("BENCH_AUTH")
local form = "application/x-www-form-urlencoded"

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- Thread-local state (each wrk thread has its own Lua state).
flows = 0
bad = 0
exhausted = 0
bad_sample = ""

local function note_bad(status, body)
  bad = bad + 1
  if bad_sample == "" then
    bad_sample = tostring(status) .. " " .. string.sub(body or "", 1, 200)
  end
end

-- Requests are formatted in init(): wrk sets the Host header only after the script is loaded.
local req
if mode == "get" then
  init = function(args)
    local headers = {}
    if auth then headers["Authorization"] = auth end
    req = wrk.format("GET", os.getenv("BENCH_PATH"), headers)
  end
  request = function() return req end
elseif mode == "post" then
  init = function(args)
    local headers = { ["Content-Type"] = form }
    if auth then headers["Authorization"] = auth end
    req = wrk.format("POST", os.getenv("BENCH_PATH"), headers, os.getenv("BENCH_BODY"))
  end
  request = function() return req end
elseif mode == "login" then
  local codes = {}
  local token_path = os.getenv("BENCH_TOKEN_PATH")
  local redirect = os.getenv("BENCH_REDIRECT")
  local auth_req
  init = function(args)
    auth_req = wrk.format("GET", os.getenv("BENCH_AUTH_PATH"), { ["Cookie"] = os.getenv("BENCH_COOKIE") })
  end
  request = function()
    local code = table.remove(codes)
    if code then
      return wrk.format("POST", token_path, { ["Content-Type"] = form, ["Authorization"] = auth },
        "grant_type=authorization_code&code=" .. code .. "&redirect_uri=" .. redirect)
    end
    return auth_req
  end
  response = function(status, headers, body)
    if status == 302 or status == 303 then
      local loc = headers["location"] or headers["Location"] or ""
      local code = string.match(loc, "[?&]code=([^&]+)")
      if code then table.insert(codes, code) else note_bad(status, loc) end
    elseif status == 200 and string.find(body, "\"id_token\"", 1, true) then
      flows = flows + 1
    else
      note_bad(status, body)
    end
  end
elseif mode == "refresh" then
  local tokens = {}
  local next_token = 0
  local token_path = os.getenv("BENCH_TOKEN_PATH")
  init = function(args)
    local n = 0
    for line in io.lines(os.getenv("BENCH_TOKENS")) do
      if n % counter_total == tid then table.insert(tokens, line) end
      n = n + 1
    end
  end
  request = function()
    next_token = next_token + 1
    local t = tokens[next_token]
    if not t then
      exhausted = exhausted + 1
      t = "exhausted.exhausted"
    end
    return wrk.format("POST", token_path, { ["Content-Type"] = form, ["Authorization"] = auth },
      "grant_type=refresh_token&refresh_token=" .. t)
  end
  response = function(status, headers, body)
    if status == 200 and string.find(body, "\"refresh_token\"", 1, true) then
      flows = flows + 1
    else
      note_bad(status, body)
    end
  end
end

-- wrk sets no global with the thread count; the refresh mode needs it to split the tokens.
local setup_inner = setup
function setup(thread)
  setup_inner(thread)
  thread:set("counter_total", tonumber(os.getenv("BENCH_THREADS") or "2"))
end

local function esc(s)
  return (string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end))
end

function done(summary, latency, requests)
  local f_flows, f_bad, f_exhausted, sample = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    f_flows = f_flows + (t:get("flows") or 0)
    f_bad = f_bad + (t:get("bad") or 0)
    f_exhausted = f_exhausted + (t:get("exhausted") or 0)
    local s = t:get("bad_sample") or ""
    if sample == "" then sample = s end
  end
  local e = summary.errors
  local json = string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"flows":%d,"bad":%d,"exhausted":%d,"bad_sample":"%s"}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, f_flows, f_bad, f_exhausted, esc(sample))
  if out_file then
    local f = assert(io.open(out_file, "w"))
    f:write(json)
    f:close()
  else
    io.write(json)
  end
end
