# shellcheck shell=bash
# Scenario 6: `vocohook receive` verifying and storing signed webhooks, each with its own
# session_id, under wrk; against, in the same run, the Debian `webhook` daemon
# (adnanh/webhook) with a payload-hmac-sha256 rule and a command that stores the payload,
# and a Node.js verifier (bench/peers/node-verifier: raw body, createHmac, timingSafeEqual,
# group-committed JSON lines). Series: vocohook (and vocohook-vs-webhook, the same runs),
# node, webhook. Sourced by bench/run (see the contract at the top of bench/run).
#
# Each run of each receiver gets a fresh store and its own requests, precomputed just before
# (bench/receive_requests.py: wrk's Lua cannot HMAC): BENCH_RECEIVE_MAX_RATE (default 40000;
# 20000 ran out in a 1 s smoke run of session 26, whose first second went past 20 k/s)
# per second of the run, each with a new session_id and the current time as its timestamp,
# and each sent once (bench/wrk_receive.lua; the run fails if they run out). The receiver
# runs on $sut_core, wrk (-t1, BENCH_RECEIVE_CONNS connections, default 64) on $load_core.
# After each run the store, read once the receiver has stopped, must hold every session
# that got a 200 (and none that was not sent), with the exact body; any answer other than a
# 200 "stored now" fails the scenario. What "stored" (and verified) means for each peer:
# bench/peers/node-verifier/README.md and bench/peers/webhook/README.md.

receive_conns=${BENCH_RECEIVE_CONNS:-64}
receive_max_rate=${BENCH_RECEIVE_MAX_RATE:-40000}
receive_count=$((receive_max_rate * seconds))
# Every request of a run carries the time it was generated; the receivers accept ±300 s.
[ "$seconds" -le 240 ] ||
    bench_die "receive: BENCH_SECONDS=$seconds would outlast the receivers' 300 s timestamp window"
# node and npm may come from elsewhere than Debian's packages (NodeSource's nodejs ships its
# own npm, and conflicts with Debian's npm): install them only when the commands are missing.
receive_pkgs=(webhook procps)
command -v node >/dev/null || receive_pkgs+=(nodejs)
command -v npm >/dev/null || receive_pkgs+=(npm)
bench_need_pkgs "${receive_pkgs[@]}"

receive_dir=$work/receive
mkdir -p "$receive_dir"
receive_secret="whsec_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# The ~2 KB session rendered as a webhook body, with __SID__ still where the session_id goes.
"$BENCH_VOCOHOOK" render --timestamp 2026-03-15T14:32:08.000Z "$template" \
    >"$receive_dir/body.json"
receive_body=$receive_dir/body.json

# The Node.js verifier, installed the way its README says: `npm ci` from the lock file, in a
# copy (nothing is written under bench/peers).
mkdir -p "$receive_dir/node-verifier"
cp "$BENCH_SRC/bench/peers/node-verifier/package.json" \
    "$BENCH_SRC/bench/peers/node-verifier/package-lock.json" \
    "$BENCH_SRC/bench/peers/node-verifier/server.js" "$receive_dir/node-verifier/"
(cd "$receive_dir/node-verifier" &&
    npm_config_cache="$receive_dir/npm-cache" npm ci --no-audit --no-fund --loglevel=error \
        >"$receive_dir/npm-ci.log" 2>&1) ||
    bench_die "npm ci of the Node.js verifier failed: $(tail -5 "$receive_dir/npm-ci.log")"

# body_bytes: as sent, __SID__ (7 bytes) replaced by a UUID (36).
receive_fmt='{"body_bytes": %s, "connections": %s, "seconds": %s, "requests_per_run": %s,'
receive_fmt+=' "node": "%s", "webhook": "%s"}'
# shellcheck disable=SC2059
bench_param receive "$(printf "$receive_fmt" "$(($(wc -c <"$receive_body") - 7 + 36))" \
    "$receive_conns" "$seconds" "$receive_count" "$(node --version)" \
    "$(webhook -version | sed 's/^webhook version //')")"

# receive_wait_line PID FILE: waits for `listening on HOST:PORT` in FILE from process PID;
# sets RECEIVE_PORT.
receive_wait_line() {
    local pid=$1 file=$2 i line
    RECEIVE_PORT=""
    for ((i = 0; i < 400; i++)); do
        line=$(grep -m1 '^listening on ' "$file" || true)
        if [ -n "$line" ]; then
            RECEIVE_PORT=${line##*:}
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}

# receive_start PEER RUNDIR: starts the receiver PEER (vocohook, node or webhook) on
# $sut_core with an empty store under RUNDIR. Sets RECEIVE_PID, RECEIVE_URL, RECEIVE_STORE.
receive_start() {
    local peer=$1 dir=$2 port
    case $peer in
    vocohook)
        RECEIVE_STORE=$dir/inbox.db
        # No --recordings: the body's recording_url (an S3 host) is never fetched; verify
        # checks that no download job was planned.
        # shellcheck disable=SC2046
        env -i PATH="$PATH" HOME="${HOME:-/root}" VOCOHOOK_SECRETS="$receive_secret" \
            $(bench_pin_cmd "$sut_core") "$BENCH_VOCOHOOK" receive --listen 127.0.0.1:0 \
            --db "$RECEIVE_STORE" ${BENCH_RECEIVE_ARGS:-} >"$dir/receive.out" 2>"$dir/receive.err" &
        RECEIVE_PID=$!
        BENCH_PIDS+=("$RECEIVE_PID")
        receive_wait_line "$RECEIVE_PID" "$dir/receive.out" ||
            bench_die "vocohook receive did not start: $(tail -5 "$dir/receive.err")"
        RECEIVE_URL=http://127.0.0.1:$RECEIVE_PORT/webhook
        ;;
    node)
        RECEIVE_STORE=$dir/inbox.jsonl
        # shellcheck disable=SC2046
        env -i PATH="$PATH" HOME="${HOME:-/root}" WEBHOOK_SECRETS="$receive_secret" \
            WEBHOOK_STORE="$RECEIVE_STORE" \
            $(bench_pin_cmd "$sut_core") node "$receive_dir/node-verifier/server.js" 0 \
            >"$dir/node.out" 2>"$dir/node.err" &
        RECEIVE_PID=$!
        BENCH_PIDS+=("$RECEIVE_PID")
        receive_wait_line "$RECEIVE_PID" "$dir/node.out" ||
            bench_die "the Node.js verifier did not start: $(tail -5 "$dir/node.err")"
        RECEIVE_URL=http://127.0.0.1:$RECEIVE_PORT/webhook
        ;;
    webhook)
        RECEIVE_STORE=$dir/store
        mkdir -p "$RECEIVE_STORE" "$dir/tmp"
        port=$(bench_free_port)
        # hooks.json is a template (-template): the secret, the store and the paths come
        # from these variables. The daemon logs nothing without -verbose.
        # shellcheck disable=SC2046
        env -i PATH="$PATH" HOME="${HOME:-/root}" VH_WEBHOOK_SECRET="$receive_secret" \
            VH_WEBHOOK_STORE="$RECEIVE_STORE" VH_WEBHOOK_TMP="$dir/tmp" \
            VH_WEBHOOK_STORE_SH="$BENCH_SRC/bench/peers/webhook/store.sh" \
            $(bench_pin_cmd "$sut_core") webhook -template \
            -hooks "$BENCH_SRC/bench/peers/webhook/hooks.json" -ip 127.0.0.1 -port "$port" \
            >"$dir/webhook.out" 2>&1 &
        RECEIVE_PID=$!
        BENCH_PIDS+=("$RECEIVE_PID")
        bench_wait_port "$port" 10 ||
            bench_die "webhook did not start: $(tail -5 "$dir/webhook.out")"
        RECEIVE_URL=http://127.0.0.1:$port/hooks/receive
        ;;
    esac
}

# receive_stop: stops the receiver once its commands (webhook runs one per request, and
# keeps running them after wrk hangs up) have finished, so the store is complete.
receive_stop() {
    local i
    for ((i = 0; i < 200; i++)); do
        pgrep -P "$RECEIVE_PID" >/dev/null || break
        sleep 0.05
    done
    bench_stop "$RECEIVE_PID"
}

for ((r = 1; r <= runs; r++)); do
    for peer in vocohook node webhook; do
        rundir=$receive_dir/run$r/$peer
        mkdir -p "$rundir"
        python3 "$BENCH_SRC/bench/receive_requests.py" gen --body "$receive_body" \
            --secret "$receive_secret" --count "$receive_count" --out "$rundir/requests.txt"
        receive_start "$peer" "$rundir"
        bench_log "receive run $r/$runs: $peer (${seconds}s, $receive_conns connections)"
        bench_wrk "$load_core" "$rundir/wrk.json" -t1 -c"$receive_conns" -d"${seconds}s" \
            -s "$BENCH_SRC/bench/wrk_receive.lua" "$RECEIVE_URL" -- "$receive_body" \
            "$rundir/requests.txt"
        receive_stop
        bench_pinned "$load_core" python3 "$BENCH_SRC/bench/receive_requests.py" verify \
            --wrk "$rundir/wrk.json" --requests "$rundir/requests.txt" --body "$receive_body" \
            --kind "$peer" --store "$RECEIVE_STORE" >"$rundir/verify.json" ||
            bench_die "receive run $r: $peer did not store what wrk counted (see above)"
        vhb sample --samples "$samples" --scenario receive --series "$peer" --run "$r" \
            --wrk "$rundir/wrk.json" --extra "$(cat "$rundir/verify.json")"
        if [ "$peer" = vocohook ]; then
            # The same runs again, for the second ratio (vs webhook): one row per ratio.
            bench_same_value receive vocohook-vs-webhook "$r"
        fi
        rm -rf "$rundir/requests.txt" "$RECEIVE_STORE" "$RECEIVE_STORE"-* "$rundir/tmp"
    done
done
