# shellcheck shell=bash
# Scenario 1b: scenario 1 over HTTPS. A backlog drained into nginx answering 204 over TLS
# (a certificate from a test CA made here, trusted by the daemon through --ca-file), first
# with connections reused (keep-alive; $sessions sessions), then with nginx closing the
# connection after every response (a full TLS handshake per delivery; $sessions / 4), each
# against wrk over HTTPS with the same connection behaviour. Also the daemon's CPU time per
# delivery in each case, and libcurl alone (bench_curl) in each case. Series:
# vocohook_reused, wrk_reused, vocohook_fresh, wrk_fresh, curl_reused, curl_fresh,
# vocohook_reused-vs-curl, vocohook_fresh-vs-curl,
# cpu_reused_us, cpu_fresh_us.
# Sourced by bench/run (see the contract at the top of bench/run).
#
# One nginx at a time on one port, so that one endpoint URL serves both cases:
# bench/nginx-tls.conf.in with keep-alive, then again with `keepalive_timeout 0`. nginx
# resumes no TLS session: every new connection is a full handshake, for wrk as for vocohook
# (whose engine would otherwise resume them). wrk does not verify the certificate; vocohook
# does (chain and name), on every handshake.

bench_need_pkgs openssl
https_conns=8 # the engine's per-endpoint limit (VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT)
https_dir=$work/https
mkdir -p "$https_dir/tls"

# A throw-away CA and a server certificate for 127.0.0.1 and localhost, both ECDSA P-256.
tls_ossl() {
    (cd "$https_dir/tls" && openssl "$@") >>"$https_dir/tls/openssl.log" 2>&1 ||
        bench_die "https: openssl $1 failed: $(tail -3 "$https_dir/tls/openssl.log")"
}
tls_ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.pem -days 2 -subj "/CN=vocohook bench CA"
tls_ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
    -out srv.csr -subj "/CN=127.0.0.1"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$https_dir/tls/ext.cnf"
tls_ossl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem \
    -days 2 -extfile ext.cnf
chmod 644 "$https_dir/tls/srv.key"

tls_port=$(bench_free_port)
tls_nginx_pid=""

# tls_start_nginx MODE: nginx on 127.0.0.1:$tls_port, one worker on the load core, with
# MODE "reused" (keep-alive) or "fresh" (closes after every response). Sets tls_nginx_pid.
tls_start_nginx() {
    local mode=$1 dir=$https_dir/nginx-$1 keepalive
    case $mode in
    reused) keepalive="keepalive_requests 1000000; keepalive_timeout 120s;" ;;
    fresh) keepalive="keepalive_timeout 0;" ;;
    esac
    mkdir -p "$dir/tmp"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$tls_port|g" -e "s|@CERT@|$https_dir/tls/srv.pem|g" \
        -e "s|@KEY@|$https_dir/tls/srv.key|g" -e "s|@KEEPALIVE@|$keepalive|g" \
        "$BENCH_SRC/bench/nginx-tls.conf.in" >"$dir/nginx.conf"
    # shellcheck disable=SC2046
    $(bench_pin_cmd "$load_core") nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
        >"$dir/stdout.log" 2>&1 &
    tls_nginx_pid=$!
    BENCH_PIDS+=("$tls_nginx_pid")
    bench_wait_port "$tls_port" 10 ||
        bench_die "https: nginx did not start: $(cat "$dir/stdout.log" "$dir/error.log" 2>/dev/null)"
}

# Stops the TLS nginx and forgets its pid (the port is taken again by the next one).
tls_stop_nginx() {
    local pid keep=()
    [ -n "$tls_nginx_pid" ] || return 0
    bench_stop "$tls_nginx_pid"
    for pid in "${BENCH_PIDS[@]}"; do
        [ "$pid" = "$tls_nginx_pid" ] || keep+=("$pid")
    done
    BENCH_PIDS=("${keep[@]}")
    tls_nginx_pid=""
}

# A full handshake per delivery costs the daemon about ten times the CPU of a delivery on
# a reused connection: the fresh case drains a quarter of the backlog, to keep its runs
# about as long as the others.
fresh_sessions=$(((sessions + 3) / 4))
bench_param https "$(printf '{"sessions_reused": %s, "sessions_fresh": %s, "body_bytes": %s, "connections": %s, "wrk_seconds": %s, "certificate": "ECDSA P-256 from a test CA", "tls_session_resumption": "off (nginx)"}' \
    "$sessions" "$fresh_sessions" "$(wc -c <"$body")" "$https_conns" "$seconds")"
# One partner and endpoint (through the product), then two backlogs on copies of that
# store: $sessions sessions for the reused case, $fresh_sessions for the fresh one.
vhb setup --vocohook "$BENCH_VOCOHOOK" --db "$https_dir/setup.db" \
    --endpoint-url "https://127.0.0.1:$tls_port/hook" >"$https_dir/setup.json"
partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
    <"$https_dir/setup.json")
for mode in reused fresh; do
    n=$sessions
    [ "$mode" = fresh ] && n=$fresh_sessions
    bench_log "https: loading $n sessions for the $mode case (daemon stopped)"
    bench_copy_store "$https_dir/setup.db" "$https_dir/$mode.db"
    "$bench_load" --db "sqlite:$https_dir/$mode.db" --partner "$partner" \
        --template "$template" --count "$n" >&2
done

# https_run RUN MODE: wrk, then vocohook draining a fresh copy of the backlog, against the
# nginx of MODE (already running).
https_run() {
    local r=$1 mode=$2 rundir=$https_dir/run$1-$2 f t0 cpu n=$sessions timeout wrk_args=() curl_args=()
    [ "$mode" = fresh ] && n=$fresh_sessions
    timeout=$(python3 -c "print(max(120, $n // 20))")
    [ "$mode" = fresh ] && wrk_args=(-H "Connection: close")
    bench_log "https run $r/$runs, $mode connections: wrk baseline (${seconds}s, $https_conns connections)"
    bench_wrk "$sut_core" "$https_dir/wrk.$r.$mode.json" -t1 -c"$https_conns" -d"${seconds}s" \
        "${wrk_args[@]}" -s "$BENCH_SRC/bench/wrk_static.lua" \
        "https://127.0.0.1:$tls_port/hook" -- post "$work/body.json"
    vhb sample --samples "$samples" --scenario https --series "wrk_$mode" --run "$r" \
        --wrk "$https_dir/wrk.$r.$mode.json"
    bench_log "https run $r/$runs, $mode connections: libcurl alone ($n requests)"
    curl_args=()
    [ "$mode" = fresh ] && curl_args=(--fresh)
    bench_curl_sample https "curl_$mode" "$r" "$https_dir/curl.$r.$mode.json" \
        --url "https://127.0.0.1:$tls_port/hook" --body "$body" --count "$n" \
        --conns "$https_conns" --ca-file "$https_dir/tls/ca.pem" "${curl_args[@]}"

    mkdir -p "$rundir"
    bench_copy_store "$https_dir/$mode.db" "$rundir/store.db"
    t0=$(bench_now_ms)
    bench_start_daemon "$rundir" "$rundir/store.db" "$sut_core" --ca-file "$https_dir/tls/ca.pem"
    bench_log "https run $r/$runs, $mode connections: vocohook draining $n deliveries"
    bench_pinned "$load_core" python3 "$vhbench" drain --db "$rundir/store.db" \
        --count "$n" --t0-ms "$t0" --timeout "$timeout" >"$rundir/drain.json"
    # The daemon's CPU (all its threads, user + system) from its start to the last
    # delivery, read before it is stopped (shutdown is not part of the work).
    cpu=$(python3 "$BENCH_SRC/bench/pg_vhbench.py" cputime "$VH_PID")
    bench_stop "$VH_PID"
    vhb sample --samples "$samples" --scenario https --series "vocohook_$mode" --run "$r" \
        --drain "$rundir/drain.json" --extra "{\"daemon_cpu_s\": $cpu}"
    bench_same_value https "vocohook_${mode}-vs-curl" "$r"
    vhb value --samples "$samples" --scenario https --series "cpu_${mode}_us" --run "$r" \
        --value "$(python3 -c "print($cpu / $n * 1e6)")" \
        --detail "{\"daemon_cpu_s\": $cpu, \"deliveries\": $n}"
    bench_log "https run $r/$runs, $mode connections: $(cat "$rundir/drain.json"), daemon CPU $cpu s"
    rm -f "$rundir"/store.db*
}

for mode in reused fresh; do
    tls_start_nginx "$mode"
    bench_log "https: nginx on 127.0.0.1:$tls_port, $mode connections (core $load_core)"
    for ((r = 1; r <= runs; r++)); do
        https_run "$r" "$mode"
    done
    tls_stop_nginx
done
