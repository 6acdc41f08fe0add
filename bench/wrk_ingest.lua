-- Scenario 2's load: POST /internal/v1/sessions with a new session_id on every request.
--   wrk -s bench/wrk_ingest.lua URL -- BODYFILE TOKEN RUNID
-- BODYFILE is an ingest body {"partner_id":…,"session":…} whose text holds __SID__ once;
-- each request gets `RUNID-<thread>-<n>` there. done() prints `WRKJSON {...}`.

local threads = {}
local next_thread = 0

function setup(thread)
    next_thread = next_thread + 1
    thread:set("tid", next_thread)
    table.insert(threads, thread)
end

local head, tail, prefix
local n = 0

function init(args)
    local f = assert(io.open(args[1], "rb"))
    local body = f:read("*a")
    f:close()
    local i, j = body:find("__SID__", 1, true)
    assert(i, "no __SID__ in " .. args[1])
    head, tail = body:sub(1, i - 1), body:sub(j + 1)
    prefix = args[3] .. "-" .. tostring(tid) .. "-"
    wrk.method = "POST"
    wrk.path = "/internal/v1/sessions"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Bearer " .. args[2]
end

function request()
    n = n + 1
    return wrk.format(nil, nil, nil, head .. prefix .. n .. tail)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"p50":%d,"p99":%d,"max":%d}}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
        e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
