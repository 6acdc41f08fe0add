# shellcheck shell=bash
# Scenario 1: drain a backlog of $sessions sessions into one endpoint (nginx answering 204),
# against wrk POSTing the same body to the same nginx, and against libcurl alone (bench_curl)
# doing the same; and the two halves of a drain alone: the engine (bench_engine, no store)
# and the store (bench_store, no HTTP). Series: vocohook, wrk, curl, curl_cpu_us,
# vocohook-vs-curl, engine, engine_cpu_us, store_claim_us, store_record_us.
# Sourced by bench/run (see the contract at the top of bench/run).

drain_conns=8 # the engine's per-endpoint limit (VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT)
bench_param drain "$(printf '{"sessions": %s, "body_bytes": %s, "connections": %s, "wrk_seconds": %s}' \
    "$sessions" "$(wc -c <"$body")" "$drain_conns" "$seconds")"
bench_drain_backlog "$work/drain"
for ((r = 1; r <= runs; r++)); do
    bench_log "drain run $r/$runs: wrk baseline (${seconds}s, $drain_conns connections)"
    bench_wrk "$sut_core" "$work/drain/wrk.$r.json" -t1 -c"$drain_conns" -d"${seconds}s" \
        -s "$BENCH_SRC/bench/wrk_static.lua" "http://127.0.0.1:$nginx_port/hook" \
        -- post "$work/body.json"
    vhb sample --samples "$samples" --scenario drain --series wrk --run "$r" \
        --wrk "$work/drain/wrk.$r.json"
    bench_log "drain run $r/$runs: libcurl alone ($sessions requests, $drain_conns connections)"
    bench_curl_sample drain curl "$r" "$work/drain/curl.$r.json" \
        --url "http://127.0.0.1:$nginx_port/hook" --body "$body" --count "$sessions" \
        --conns "$drain_conns"
    bench_log "drain run $r/$runs: the engine alone ($sessions requests, $drain_conns connections)"
    bench_client_sample "$bench_engine" drain engine "$r" "$work/drain/engine.$r.json" \
        --url "http://127.0.0.1:$nginx_port/hook" --body "$body" --count "$sessions" \
        --conns "$drain_conns"

    rundir=$work/drain/run$r
    bench_log "drain run $r/$runs: vocohook draining $sessions deliveries"
    bench_drain_once "$work/drain/base.db" "$rundir"
    vhb sample --samples "$samples" --scenario drain --series vocohook --run "$r" \
        --drain "$rundir/drain.json"
    bench_same_value drain vocohook-vs-curl "$r"

    # The store half alone, on another copy: claim and record with no HTTP in between.
    bench_copy_store "$work/drain/base.db" "$rundir/store.db"
    bench_pinned "$sut_core" "$bench_store" --db "sqlite:$rundir/store.db" >"$rundir/store.json"
    got=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["deliveries"])' \
        <"$rundir/store.json")
    [ "$got" -eq "$sessions" ] ||
        bench_die "drain: bench_store drained $got deliveries of $sessions"
    for half in claim record; do
        vhb value --samples "$samples" --scenario drain --series "store_${half}_us" --run "$r" \
            --value "$(python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' \
                "${half}_cpu_us" <"$rundir/store.json")"
    done
    rm -f "$rundir"/store.db*
done
