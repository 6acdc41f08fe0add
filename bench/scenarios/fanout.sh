# shellcheck shell=bash
# Scenario 2: scenario 1 with 5 endpoints per partner: every session fans out into 5
# deliveries (to /hook1 … /hook5 of the same nginx), drained by one daemon. The figure is
# deliveries/s, compared with scenario 1's (drain/vocohook). Series: vocohook.
# Sourced by bench/run (see the contract at the top of bench/run).
#
# The engine's per-endpoint cap (8 attempts at once) is keyed on the endpoint's id, not on
# host:port (src/deliver/engine.c: a job's fairness key is its endpoint id), so 5 endpoints
# on one nginx port may have 5 × 8 = 40 attempts in flight (the engine's total cap is 256);
# they share one pool of connections to 127.0.0.1:$nginx_port (libcurl's, per host:port).
# The backlog holds as many deliveries as scenario 1's ($sessions), so the two drains do the
# same number of deliveries: $sessions / 5 sessions × 5 endpoints.

fanout_endpoints=5
if ! wants drain; then
    bench_log "fanout: scenario drain is not in --only: the report has no ratio to it"
fi
fanout_sessions=$(((sessions + fanout_endpoints - 1) / fanout_endpoints))
fanout_deliveries=$((fanout_sessions * fanout_endpoints))
fanout_dir=$work/fanout
mkdir -p "$fanout_dir"
bench_param fanout "$(printf '{"sessions": %s, "endpoints": %s, "deliveries": %s, "body_bytes": %s, "max_in_flight": "8 per endpoint, 256 in all"}' \
    "$fanout_sessions" "$fanout_endpoints" "$fanout_deliveries" "$(wc -c <"$body")")"
bench_log "fanout: loading $fanout_sessions sessions × $fanout_endpoints endpoints (daemon stopped)"
fanout_urls=()
for ((i = 1; i <= fanout_endpoints; i++)); do
    fanout_urls+=(--endpoint-url "http://127.0.0.1:$nginx_port/hook$i")
done
# The partner and its 5 endpoints, through the product (partner create, then
# POST /api/v2/config/webhooks on a daemon that is stopped again), before the backlog.
vhb setup --vocohook "$BENCH_VOCOHOOK" --db "$fanout_dir/base.db" "${fanout_urls[@]}" \
    >"$fanout_dir/setup.json"
partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
    <"$fanout_dir/setup.json")
"$bench_load" --db "sqlite:$fanout_dir/base.db" --partner "$partner" \
    --template "$template" --count "$fanout_sessions" >"$fanout_dir/load.txt"
cat "$fanout_dir/load.txt" >&2
grep -q " $fanout_deliveries deliveries" "$fanout_dir/load.txt" ||
    bench_die "fanout: expected $fanout_deliveries deliveries: $(cat "$fanout_dir/load.txt")"
timeout=$(python3 -c "print(max(120, $fanout_deliveries // 20))")
for ((r = 1; r <= runs; r++)); do
    rundir=$fanout_dir/run$r
    mkdir -p "$rundir"
    bench_copy_store "$fanout_dir/base.db" "$rundir/store.db"
    t0=$(bench_now_ms)
    bench_start_daemon "$rundir" "$rundir/store.db" "$sut_core"
    bench_log "fanout run $r/$runs: vocohook draining $fanout_deliveries deliveries to $fanout_endpoints endpoints"
    bench_pinned "$load_core" python3 "$vhbench" drain --db "$rundir/store.db" \
        --count "$fanout_deliveries" --t0-ms "$t0" --timeout "$timeout" >"$rundir/drain.json"
    bench_stop "$VH_PID"
    vhb sample --samples "$samples" --scenario fanout --series vocohook --run "$r" \
        --drain "$rundir/drain.json"
    bench_log "fanout run $r/$runs: $(cat "$rundir/drain.json")"
    rm -f "$rundir"/store.db*
done
