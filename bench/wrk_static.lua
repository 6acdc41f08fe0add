-- The baselines' requests: one fixed request, built once (wrk's fast path).
--   wrk -s bench/wrk_static.lua URL -- get
--   wrk -s bench/wrk_static.lua URL -- post BODYFILE
-- `post` sends BODYFILE with the headers of a vocohook webhook (same names, same lengths).
-- done() prints one line `WRKJSON {...}` for bench/run.

function init(args)
    if args[1] == "post" then
        local f = assert(io.open(args[2], "rb"))
        wrk.method = "POST"
        wrk.body = f:read("*a")
        f:close()
        wrk.headers["Content-Type"] = "application/json"
        wrk.headers["User-Agent"] = "vocohook/0.1.0"
        wrk.headers["X-Webhook-Timestamp"] = "2026-03-15T14:32:08.000Z"
        wrk.headers["X-Webhook-Signature"] = "sha256=" .. string.rep("0", 64)
        wrk.headers["X-Webhook-Id"] = "00000000-0000-4000-8000-000000000000"
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"p50":%d,"p99":%d,"max":%d}}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
        e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
