# shellcheck shell=bash
# Scenario 7: the same drain as scenario 1, done by the webhook sender a Node.js team would
# write (bench/peers/node-sender/sender.js: better-sqlite3 outbox in WAL with
# synchronous=FULL, undici with 8 keep-alive connections, a fresh timestamp and
# crypto.createHmac signature per attempt, attempts and states committed in batches).
# Series: node, vocohook. Each run drains the same $sessions deliveries of the same body
# into the same nginx twice, measured the same way: the Node.js sender and vocohook
# (scenario 1's backlog and drain, bench_drain_once), alternating which goes first, so that
# the ratio compares two drains a minute apart rather than scenario 1's figure from ten
# minutes earlier (the machine drifts by a tenth and more in that time; scenario 1's figure
# is shown too). For both, t0 is just before the process starts, then vhbench.py's `drain`
# polls the store read-only from $load_core until all are `succeeded` and takes the last
# commit time.
# Sourced by bench/run (see the contract at the top of bench/run).
#
# better-sqlite3 is a native addon. Its install script tries a prebuilt binary from GitHub
# first and falls back to node-gyp, which fetches Node's headers from nodejs.org; neither
# is reachable from the machines this runs on, so `npm ci` runs with
# npm_config_build_from_source=true (no download is attempted) and npm_config_nodedir set
# to the prefix of the running node, whose headers (include/node/) come with the node
# package: node-gyp compiles the addon and its bundled SQLite from the npm tarball with
# g++, make and python3. The result is kept in bench/peers/node-sender/node_modules
# (ignored by git) with a stamp of the lockfile and the node version; a later run with the
# same lockfile and node reuses it, anything else runs `npm ci` again.

ns_peer=$BENCH_SRC/bench/peers/node-sender
ns_dir=$work/nodesender
ns_conns=8 # vocohook's per-endpoint limit (VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT), as in scenario 1
mkdir -p "$ns_dir"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    bench_die "nodesender: node and npm are needed (Node.js 20 or later)"
fi
ns_node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$ns_node_major" -ge 20 ] ||
    bench_die "nodesender: better-sqlite3 12 needs Node.js 20 or later, this is $(node --version)"
ns_nodedir=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
[ -f "$ns_nodedir/include/node/common.gypi" ] ||
    bench_die "nodesender: no Node.js headers in $ns_nodedir/include/node (node-gyp needs them to build better-sqlite3 offline)"
bench_need_pkgs g++ make python3

ns_stamp="$(cat "$ns_peer/package.json" "$ns_peer/package-lock.json" | sha256sum | cut -c1-64) $(node -p 'process.version + " abi" + process.versions.modules + " " + process.arch')"
if [ "$(cat "$ns_peer/node_modules/.vh-stamp" 2>/dev/null)" != "$ns_stamp" ]; then
    bench_log "nodesender: npm ci (builds better-sqlite3 from source: a minute or more)"
    if ! (cd "$ns_peer" && env npm_config_build_from_source=true npm_config_nodedir="$ns_nodedir" \
        JOBS=max npm ci --no-audit --no-fund --foreground-scripts) >"$ns_dir/npm-ci.log" 2>&1; then
        bench_die "nodesender: npm ci failed: $(grep -v '^gyp info\|warning:\|note:' "$ns_dir/npm-ci.log" | tail -15)"
    fi
    printf '%s\n' "$ns_stamp" >"$ns_peer/node_modules/.vh-stamp"
fi
(cd "$ns_peer" && node -e 'new (require("better-sqlite3"))(":memory:").close(); require("undici")') ||
    bench_die "nodesender: better-sqlite3 or undici does not load (remove $ns_peer/node_modules to reinstall)"

ns_versions=$(cd "$ns_peer" && node -p 'JSON.stringify({node: process.version,
    better_sqlite3: require("better-sqlite3/package.json").version,
    undici: require("undici/package.json").version,
    sqlite: new (require("better-sqlite3"))(":memory:").prepare("select sqlite_version() v").get().v})')
bench_param nodesender "$(python3 -c 'import json, sys
p = {"sessions": int(sys.argv[1]), "body_bytes": int(sys.argv[2]), "connections": int(sys.argv[3])}
p.update(json.loads(sys.argv[4]))
print(json.dumps(p))' "$sessions" "$(wc -c <"$body")" "$ns_conns" "$ns_versions")"

# Removes a pid that has been waited for from BENCH_PIDS (the system may reuse it).
ns_forget() {
    local keep=() p
    for p in "${BENCH_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    BENCH_PIDS=("${keep[@]}")
}

# vocohook's backlog: scenario 1's, when it ran in this run of bench/run.
bench_drain_backlog "$work/drain"
# The Node.js sender's backlog, loaded once with the sender stopped, copied for each run.
bench_log "nodesender: loading $sessions deliveries into the Node.js sender's outbox"
node "$ns_peer/sender.js" load --db "$ns_dir/base.db" --url "http://127.0.0.1:$nginx_port/hook" \
    --body "$body" --count "$sessions" >"$ns_dir/load.json"
timeout=$(python3 -c "print(max(120, $sessions // 20))")
# vocohook's drain of run $1, beside the Node sender's: after it in odd runs, before it in
# even ones, so that neither side always drains second.
ns_vocohook_run() {
    bench_log "nodesender run $1/$runs: vocohook draining the same $sessions deliveries"
    bench_drain_once "$work/drain/base.db" "$ns_dir/run$1/vocohook"
    vhb sample --samples "$samples" --scenario nodesender --series vocohook --run "$1" \
        --drain "$ns_dir/run$1/vocohook/drain.json"
}

for ((r = 1; r <= runs; r++)); do
    rundir=$ns_dir/run$r
    mkdir -p "$rundir"
    if [ $((r % 2)) -eq 0 ]; then
        ns_vocohook_run "$r"
    fi
    bench_copy_store "$ns_dir/base.db" "$rundir/outbox.db"
    bench_log "nodesender run $r/$runs: the Node.js sender draining $sessions deliveries"
    t0=$(bench_now_ms)
    # Started directly, not through a shell function, so that $! is the process's own pid.
    # shellcheck disable=SC2046
    $(bench_pin_cmd "$sut_core") node "$ns_peer/sender.js" run --db "$rundir/outbox.db" \
        --concurrency "$ns_conns" --exit-when-idle >"$rundir/sender.json" 2>"$rundir/sender.err" &
    ns_pid=$!
    BENCH_PIDS+=("$ns_pid")
    # shellcheck disable=SC2046
    $(bench_pin_cmd "$load_core") python3 "$vhbench" drain --db "$rundir/outbox.db" \
        --count "$sessions" --t0-ms "$t0" --timeout "$timeout" >"$rundir/drain.json" &
    ns_poll=$!
    BENCH_PIDS+=("$ns_poll")
    # With --exit-when-idle the sender exits by itself once nothing is pending (or at once
    # if it fails); the poller sees the last commit within one poll after that.
    ns_deadline=$((SECONDS + timeout))
    while kill -0 "$ns_pid" 2>/dev/null; do
        [ "$SECONDS" -lt "$ns_deadline" ] ||
            bench_die "nodesender run $r: not drained after $timeout s: $(tail -5 "$rundir/sender.err")"
        sleep 0.1
    done
    ns_rc=0
    wait "$ns_pid" || ns_rc=$?
    ns_forget "$ns_pid"
    [ "$ns_rc" -eq 0 ] ||
        bench_die "nodesender run $r: the sender exited with $ns_rc: $(tail -5 "$rundir/sender.err")"
    for ((i = 0; i < 300; i++)); do
        kill -0 "$ns_poll" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$ns_poll" 2>/dev/null &&
        bench_die "nodesender run $r: the sender exited, the outbox is not drained"
    ns_rc=0
    wait "$ns_poll" || ns_rc=$?
    ns_forget "$ns_poll"
    [ "$ns_rc" -eq 0 ] || bench_die "nodesender run $r: polling the outbox failed"
    node "$ns_peer/sender.js" stats --db "$rundir/outbox.db" >"$rundir/stats.json"
    # Every row succeeded, exactly once, each with one 2xx attempt.
    python3 -c 'import json, sys
n = int(sys.argv[2])
s = json.load(open(sys.argv[1]))
sys.exit(0 if s["deliveries"] == n and s["states"] == {"succeeded": n} and s["attempts"] == n
         and s["failed_attempts"] == 0 else 1)' "$rundir/stats.json" "$sessions" ||
        bench_die "nodesender run $r: not every one of the $sessions deliveries succeeded once: $(cat "$rundir/stats.json")"
    ns_sample=$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
d["sender"] = s
d["cpu_us_per_delivery"] = (s["cpu_user_ms"] + s["cpu_system_ms"]) * 1000.0 / d["deliveries"]
# Without the process start-up (node, module loading: a few hundred ms), for reference.
d["rate_from_first_attempt"] = d["deliveries"] / (d["seconds"] - d["first_attempt_after_s"])
print(d["rate"])
print(json.dumps(d))' "$rundir/drain.json" "$rundir/sender.json")
    vhb value --samples "$samples" --scenario nodesender --series node --run "$r" \
        --value "$(sed -n 1p <<<"$ns_sample")" --detail "$(sed -n 2p <<<"$ns_sample")"
    rm -f "$rundir"/outbox.db*
    if [ $((r % 2)) -eq 1 ]; then
        ns_vocohook_run "$r"
    fi
done
