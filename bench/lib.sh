# shellcheck shell=bash
# Shell helpers for bench/run (sourced, not run). Every server a function starts is recorded
# by its pid in BENCH_PIDS, so bench_cleanup stops exactly what this run started.

BENCH_PIDS=()
# Commands bench/run runs as it exits, after stopping the servers (bench_on_exit CMD).
BENCH_EXIT_HOOKS=()

bench_on_exit() {
    BENCH_EXIT_HOOKS+=("$1")
}
# Set by bench_start_daemon, read by bench/run.
export VH_PORT=""

bench_log() {
    printf 'bench: %s\n' "$*" >&2
}

bench_die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

# Installs the Debian packages named as arguments that are missing: `apt-get update` once,
# then one `apt-get install`; nothing at all when every package is there.
bench_need_pkgs() {
    local missing=() p sudo=""
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || bench_die "need root or sudo to install: ${missing[*]}"
        sudo=sudo
    fi
    bench_log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# bench_copy_store SRC DST: copies the SQLite store SRC (with its -wal and -shm when there)
# to DST, then syncs, so the copy's writeback does not compete with the run that follows
# (a 4.5 GB store copied and not synced was still being written out during the drain).
bench_copy_store() {
    local ext
    for ext in "" -wal -shm; do
        if [ -e "$1$ext" ]; then
            cp "$1$ext" "$2$ext"
        fi
    done
    sync
}

bench_now_ms() {
    date +%s%3N
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
bench_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Waits until something accepts connections on 127.0.0.1:$1 (at most $2 seconds).
bench_wait_port() {
    local port=$1 secs=${2:-10} i
    for ((i = 0; i < secs * 20; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# Pin a command to a core when the machine has more than one (taskset -c CORE CMD...).
bench_pinned() {
    local core=$1
    shift
    if [ "$BENCH_NCPU" -gt 1 ]; then
        taskset -c "$core" "$@"
    else
        "$@"
    fi
}

# The pinning prefix for a command started in the background ("taskset -c CORE", or
# nothing on one CPU); used unquoted, so that it splits into words.
bench_pin_cmd() {
    if [ "$BENCH_NCPU" -gt 1 ] && [ -n "$1" ]; then
        echo "taskset -c $1"
    fi
}

# bench_start_nginx DIR PORT CORE: nginx answering 204 to everything on 127.0.0.1:PORT, one
# worker pinned to CORE, its files under DIR. Sets NGINX_PID.
bench_start_nginx() {
    local dir=$1 port=$2 core=$3
    mkdir -p "$dir/tmp"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" "$BENCH_SRC/bench/nginx.conf.in" \
        >"$dir/nginx.conf"
    # Started directly, not through a shell function, so that $! is nginx's own pid.
    # shellcheck disable=SC2046
    $(bench_pin_cmd "$core") nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
        >"$dir/stdout.log" 2>&1 &
    NGINX_PID=$!
    BENCH_PIDS+=("$NGINX_PID")
    bench_wait_port "$port" 10 || bench_die "nginx did not start: $(cat "$dir/stdout.log" "$dir/error.log" 2>/dev/null)"
}

# bench_start_daemon DIR DB CORES [FLAG...]: `vocohook serve` on 127.0.0.1:0 with the ingest
# token $BENCH_TOKEN, pinned to CORES (a core, or a list for taskset: "0,1"; "" for none),
# logs under DIR. DB is a SQLite path or a store URL (sqlite:…, postgres://…). Sets VH_PID
# and VH_PORT once it prints `listening on HOST:PORT`.
bench_start_daemon() {
    local dir=$1 db=$2 core=$3 i line
    shift 3
    case $db in
    sqlite:* | postgres://* | postgresql://*) ;;
    *) db=sqlite:$db ;;
    esac
    mkdir -p "$dir"
    : >"$dir/serve.out"
    # shellcheck disable=SC2046
    env -i PATH="$PATH" HOME="${HOME:-/root}" VOCOHOOK_INGEST_TOKEN="$BENCH_TOKEN" \
        $(bench_pin_cmd "$core") "$BENCH_VOCOHOOK" serve --listen 127.0.0.1:0 --db "$db" \
        --allow-http --allow-private-networks --rate-limit off --rate-limit-calls off "$@" \
        >"$dir/serve.out" 2>>"$dir/serve.err" &
    VH_PID=$!
    BENCH_PIDS+=("$VH_PID")
    VH_PORT=""
    for ((i = 0; i < 400; i++)); do
        line=$(grep -m1 '^listening on ' "$dir/serve.out" || true)
        if [ -n "$line" ]; then
            VH_PORT=${line##*:}
            return 0
        fi
        kill -0 "$VH_PID" 2>/dev/null || break
        sleep 0.05
    done
    bench_die "vocohook serve did not start: $(tail -5 "$dir/serve.err")"
}

# bench_drain_backlog DIR: loads scenario 1's backlog ($sessions sessions of $template into
# one endpoint at the nginx of this run, the daemon stopped) into DIR/base.db, once per run
# of bench/run: a second call with the same DIR finds it there.
bench_drain_backlog() {
    local dir=$1 partner
    [ -e "$dir/base.db" ] && [ -e "$dir/loaded" ] && return 0
    mkdir -p "$dir"
    rm -f "$dir"/base.db*
    bench_log "drain: loading $sessions sessions (daemon stopped)"
    vhb setup --vocohook "$BENCH_VOCOHOOK" --db "$dir/base.db" \
        --endpoint-url "http://127.0.0.1:$nginx_port/hook" >"$dir/setup.json"
    partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
        <"$dir/setup.json")
    "$bench_load" --db "sqlite:$dir/base.db" --partner "$partner" \
        --template "$template" --count "$sessions" >&2
    : >"$dir/loaded"
}

# bench_drain_once BASE RUNDIR: one vocohook drain of a copy of the backlog BASE (made by
# bench_drain_backlog), the daemon on $sut_core and the poller on $load_core: t0 just
# before the daemon starts, the end at the last `succeeded` committed. The poller's JSON
# goes to RUNDIR/drain.json; the copy is removed after.
bench_drain_once() {
    local base=$1 rundir=$2 t0 timeout
    timeout=$(python3 -c "print(max(120, $sessions // 20))")
    mkdir -p "$rundir"
    bench_copy_store "$base" "$rundir/store.db"
    t0=$(bench_now_ms)
    bench_start_daemon "$rundir" "$rundir/store.db" "$sut_core"
    bench_pinned "$load_core" python3 "$vhbench" drain --db "$rundir/store.db" --count "$sessions" \
        --t0-ms "$t0" --timeout "$timeout" >"$rundir/drain.json"
    bench_stop "$VH_PID"
    rm -f "$rundir"/store.db*
}

# Stops one process this run started (SIGTERM, then SIGKILL after 15 s) and waits for it.
bench_stop() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        bench_stop "$pid"
    done
    BENCH_PIDS=()
}

# bench_wrk CORE OUTFILE WRK-ARGS...: runs wrk pinned to CORE; its JSON summary line (printed
# by the Lua scripts' done()) goes to OUTFILE, the whole output to OUTFILE.txt. A request
# times out after 30 s, not wrk's 2 s: a slow answer is a latency to report, not an error.
bench_wrk() {
    local core=$1 out=$2
    shift 2
    bench_pinned "$core" wrk --timeout 30s "$@" >"$out.txt" 2>&1 || bench_die "wrk failed: $(tail -5 "$out.txt")"
    grep '^WRKJSON ' "$out.txt" | sed 's/^WRKJSON //' >"$out"
    [ -s "$out" ] || bench_die "wrk printed no summary: $(tail -5 "$out.txt")"
}

# bench_client_sample PROGRAM SCENARIO SERIES RUN OUT ARGS...: a client program that prints
# {"requests", "seconds", "rate", "cpu_us"} (bench_curl, bench_engine), on $sut_core; records
# its requests/s under SERIES, with its CPU per request in the detail, and that CPU alone
# under SERIES_cpu_us.
bench_client_sample() {
    local program=$1 scenario=$2 series=$3 run=$4 out=$5
    shift 5
    bench_pinned "$sut_core" "$program" "$@" >"$out" ||
        bench_die "$scenario: $(basename "$program") failed (see above)"
    vhb value --samples "$samples" --scenario "$scenario" --series "$series" --run "$run" \
        --value "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["rate"])' <"$out")" \
        --detail "$(cat "$out")"
    vhb value --samples "$samples" --scenario "$scenario" --series "${series}_cpu_us" \
        --run "$run" \
        --value "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu_us"])' <"$out")"
}

# bench_curl_sample SCENARIO SERIES RUN OUT ARGS...: libcurl alone (bench/bench_curl.c, full
# libcurl transfers with no store and no signing), as bench_client_sample.
bench_curl_sample() {
    bench_client_sample "$bench_curl" "$@"
}

# bench_same_value SCENARIO SERIES RUN: records the last sample's value again under SERIES
# (one report row per ratio: the same runs against a second baseline).
bench_same_value() {
    local last
    last=$(tail -1 "$samples")
    vhb value --samples "$samples" --scenario "$1" --series "$2" --run "$3" \
        --value "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])' <<<"$last")" \
        --detail "$(python3 -c 'import json,sys; print(json.dumps({"same_runs_as": json.load(sys.stdin)["series"]}))' <<<"$last")"
}

# Stops what the last scenario left running: every process this run started except nginx.
bench_cleanup_scenario() {
    local pid keep=()
    for pid in "${BENCH_PIDS[@]}"; do
        if [ "$pid" = "${NGINX_PID:-}" ]; then
            keep+=("$pid")
        else
            bench_stop "$pid"
        fi
    done
    BENCH_PIDS=("${keep[@]}")
}

# bench_param NAME JSON: the parameters of scenario NAME, shown under its table.
bench_param() {
    printf '%s\n' "$2" >"$work/params/$1.json"
}
