-- Scenario 6's load: signed webhooks, each with its own session_id, each sent once.
--   wrk -t1 -s bench/wrk_receive.lua URL -- BODYFILE REQUESTSFILE
-- BODYFILE is the webhook body with __SID__ where the session_id goes (once). REQUESTSFILE
-- (bench/receive_requests.py gen) has one precomputed request a line:
--   <session_id> <X-Webhook-Timestamp> <X-Webhook-Signature> <body signature> <X-Webhook-Id>
-- (wrk's Lua cannot compute an HMAC). Line n is request n; no line is sent twice. When the
-- lines run out the thread stops and done() says `"exhausted":1`: the run is void.
-- The body signature goes in X-Webhook-Body-Signature, for the `webhook` daemon's
-- payload-hmac-sha256 rule; vocohook and the Node.js verifier ignore that header.
-- response() sorts the answers: a 200 whose body says `"duplicate":false` is a webhook
-- stored now (`fresh`); a 200 saying `"duplicate":true` is a `duplicate`; anything else is
-- `rejected` (and the first one is kept in `first_bad`). One thread only (-t1), so that the
-- lines sent are the first `sent` lines of the file. done() prints `WRKJSON {...}`.

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

local lines, head, tail, headers
sent, fresh, duplicate, rejected, exhausted, first_bad = 0, 0, 0, 0, 0, ""

function init(args)
    local f = assert(io.open(args[1], "rb"))
    local body = f:read("*a")
    f:close()
    local i, j = body:find("__SID__", 1, true)
    assert(i, "no __SID__ in " .. args[1])
    head, tail = body:sub(1, i - 1), body:sub(j + 1)
    lines = assert(io.open(args[2], "r"))
    wrk.method = "POST"
    headers = {
        ["Content-Type"] = "application/json",
        ["User-Agent"] = "vocohook/0.1.0",
    }
end

function request()
    local line = lines:read("*l")
    if not line then
        -- Out of signed requests: stop this thread. The request returned here is harmless
        -- (no receiver stores a GET) and its answer is never read.
        exhausted = 1
        wrk.thread:stop()
        return wrk.format("GET", "/exhausted", {}, nil)
    end
    local sid, ts, sig, bsig, wid = line:match("^(%S+) (%S+) (%S+) (%S+) (%S+)$")
    headers["X-Webhook-Timestamp"] = ts
    headers["X-Webhook-Signature"] = sig
    headers["X-Webhook-Body-Signature"] = bsig
    headers["X-Webhook-Id"] = wid
    sent = sent + 1
    return wrk.format(nil, nil, headers, head .. sid .. tail)
end

function response(status, hdrs, body)
    if status == 200 and body:find('"duplicate":false', 1, true) then
        fresh = fresh + 1
    elseif status == 200 and body:find('"duplicate":true', 1, true) then
        duplicate = duplicate + 1
    else
        rejected = rejected + 1
        if first_bad == "" then
            -- Printable, without quotes or backslashes: it goes into done()'s JSON as is.
            first_bad = status .. " " .. body:sub(1, 200):gsub("[^%w%s%p]", "?"):gsub('["\\]', "'")
        end
    end
end

function done(summary, latency, requests)
    local t = {sent = 0, fresh = 0, duplicate = 0, rejected = 0, exhausted = 0}
    local bad = ""
    for _, thread in ipairs(threads) do
        for k in pairs(t) do
            t[k] = t[k] + thread:get(k)
        end
        if bad == "" then
            bad = thread:get("first_bad")
        end
    end
    local e = summary.errors
    io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"p50":%d,"p99":%d,"max":%d},"threads":%d,"sent":%d,"fresh":%d,' ..
        '"duplicate":%d,"rejected":%d,"exhausted":%d,"first_bad":"%s"}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
        e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max,
        #threads, t.sent, t.fresh, t.duplicate, t.rejected, t.exhausted, (bad:gsub("%c", " "))))
end
