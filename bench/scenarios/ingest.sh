# shellcheck shell=bash
# Scenario 3: concurrent clients POSTing ~2 KB sessions to /internal/v1/sessions, each
# committed before its 202, against wrk on /healthz of the same daemon. Series: vocohook, healthz.
# Sourced by bench/run (see the contract at the top of bench/run).

conns=${BENCH_CONNS:-16}
bench_param ingest "$(printf '{"session_bytes": %s, "connections": %s, "seconds": %s}' \
    "$(wc -c <"$template")" "$conns" "$seconds")"
mkdir -p "$work/ingest"
for ((r = 1; r <= runs; r++)); do
    rundir=$work/ingest/run$r
    mkdir -p "$rundir"
    vhb setup --vocohook "$BENCH_VOCOHOOK" --db "$rundir/store.db" >"$rundir/setup.json"
    partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
        <"$rundir/setup.json")
    printf '{"partner_id":"%s","session":%s}' "$partner" "$(cat "$template")" \
        >"$rundir/ingest.json"
    bench_start_daemon "$rundir" "$rundir/store.db" "$sut_core"
    url=http://127.0.0.1:$VH_PORT
    bench_log "ingest run $r/$runs: wrk /healthz then ingest (${seconds}s each, $conns connections)"
    bench_wrk "$load_core" "$rundir/healthz.json" -t1 -c"$conns" -d"${seconds}s" \
        -s "$BENCH_SRC/bench/wrk_static.lua" "$url/healthz" -- get
    vhb sample --samples "$samples" --scenario ingest --series healthz --run "$r" \
        --wrk "$rundir/healthz.json"
    bench_wrk "$load_core" "$rundir/ingest.wrk.json" -t1 -c"$conns" -d"${seconds}s" \
        -s "$BENCH_SRC/bench/wrk_ingest.lua" "$url" -- "$rundir/ingest.json" \
        "$BENCH_TOKEN" "r$r"
    bench_stop "$VH_PID"
    # Every 202 was committed before it was sent: the store holds at least as many
    # events as wrk counted answers (wrk may stop with requests still in flight).
    stored=$(vhb count --db "$rundir/store.db")
    answered=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])' \
        <"$rundir/ingest.wrk.json")
    [ "$stored" -ge "$answered" ] ||
        bench_die "ingest run $r: wrk got $answered answers but the store holds $stored events"
    vhb sample --samples "$samples" --scenario ingest --series vocohook --run "$r" \
        --wrk "$rundir/ingest.wrk.json" --extra "{\"stored_events\": $stored}"
    rm -f "$rundir"/store.db*
done
