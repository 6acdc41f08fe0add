#!/usr/bin/env bash
# A duel for the sender: two builds of `vocohook serve` drain the same backlog at the same
# time, so that a change of a few per cent can be weighed on a noisy machine
# (docs/BENCHMARKS.md, session 14; bench/duel_receive.sh is the receiver's).
#
#   bench/duel_drain.sh BUILD_A BUILD_B [SESSIONS] [ROUNDS]
#
# BUILD_A and BUILD_B are build directories (each with a `vocohook`; BUILD_A's bench_load
# loads the backlog). One backlog of SESSIONS (default 40 000) ~2 KB sessions is loaded
# once; each round, both daemons start on core 0 at once, each on its own copy of it, and
# drain into one nginx on core 1 (answering 204). Both orders are run in every round (A
# started first, then B), ROUNDS times (default 3). The figure is each daemon's CPU per
# delivery (user + system of all its threads, /proc/PID/stat, read once its last delivery
# is recorded, start-up included); the end prints the ratios B/A. DUEL_ARGS_A and
# DUEL_ARGS_B add flags to either daemon. DUEL_SQL_A and DUEL_SQL_B run SQL (sqlite3) on
# either side's backlog once, after the load: a schema change weighed on one build
# (rebuild the same index on the other side too, so that both start from fresh pages).
#
# Read the CPU per delivery: the same build against itself differs by about 1 %. Rates are
# not compared: two daemons share the core and the sink, so each one's rate says little.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
build_a=$1
build_b=$2
sessions=${3:-40000}
rounds=${4:-3}
src=$(cd "$(dirname "$0")/.." && pwd)
for b in "$build_a" "$build_b"; do
    [ -x "$b/vocohook" ] || { echo "duel: no vocohook in $b" >&2; exit 2; }
done
[ -x "$build_a/bench_load" ] || { echo "duel: no bench_load in $build_a" >&2; exit 2; }
for tool in nginx sqlite3 taskset python3; do
    command -v "$tool" >/dev/null || { echo "duel: $tool is needed" >&2; exit 2; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "duel: needs two CPUs (daemons on core 0, nginx on core 1)" >&2
    exit 2
fi

work=$(mktemp -d /tmp/vh-dduel-XXXXXX)
pids=()
nginx_pid=""
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')
mkdir -p "$work/nginx/tmp"
sed -e "s|@DIR@|$work/nginx|g" -e "s|@PORT@|$port|g" "$src/bench/nginx.conf.in" \
    >"$work/nginx/nginx.conf"
taskset -c 1 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' \
    >"$work/nginx/out" 2>&1 &
nginx_pid=$!
for ((i = 0; i < 200; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done

echo "duel: loading $sessions sessions" >&2
python3 "$src/bench/vhbench.py" setup --vocohook "$build_a/vocohook" --db "$work/base.db" \
    --endpoint-url "http://127.0.0.1:$port/hook" >"$work/setup.json"
partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
    <"$work/setup.json")
"$build_a/bench_load" --db "sqlite:$work/base.db" --partner "$partner" \
    --template "$src/bench/session-2k.json" --count "$sessions" >/dev/null
ticks=$(getconf CLK_TCK)
for side in a b; do
    for ext in "" -wal -shm; do
        [ -e "$work/base.db$ext" ] && cp "$work/base.db$ext" "$work/base-$side.db$ext"
    done
done
[ -n "${DUEL_SQL_A:-}" ] && sqlite3 "$work/base-a.db" "$DUEL_SQL_A" >/dev/null
[ -n "${DUEL_SQL_B:-}" ] && sqlite3 "$work/base-b.db" "$DUEL_SQL_B" >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Deliveries recorded: a claimed row stays pending in the file until its attempt is.
recorded() {
    sqlite3 "file:$1?mode=ro" \
        "SELECT $sessions - count(*) FROM deliveries WHERE state = 'pending'" 2>/dev/null ||
        echo 0
}

# start_daemon SIDE BUILD ARGS: starts it on a copy of the backlog; sets DPID.
start_daemon() {
    local side=$1 build=$2 args=$3 ext
    rm -rf "${work:?}/$side"
    mkdir -p "$work/$side"
    for ext in "" -wal -shm; do
        [ -e "$work/base-$side.db$ext" ] &&
            cp "$work/base-$side.db$ext" "$work/$side/store.db$ext"
    done
    # shellcheck disable=SC2086
    env -i PATH="$PATH" HOME="${HOME:-/root}" taskset -c 0 "$build/vocohook" serve \
        --listen 127.0.0.1:0 --db "sqlite:$work/$side/store.db" --allow-http \
        --allow-private-networks --rate-limit off --rate-limit-calls off $args \
        >"$work/$side/out" 2>"$work/$side/err" &
    DPID=$!
    pids+=("$DPID")
}

ratios=()
for ((r = 1; r <= rounds; r++)); do
    for first in a b; do
        sync
        pids=()
        if [ $first = a ]; then
            start_daemon a "$build_a" "${DUEL_ARGS_A:-}"
            pid_a=$DPID
            start_daemon b "$build_b" "${DUEL_ARGS_B:-}"
            pid_b=$DPID
        else
            start_daemon b "$build_b" "${DUEL_ARGS_B:-}"
            pid_b=$DPID
            start_daemon a "$build_a" "${DUEL_ARGS_A:-}"
            pid_a=$DPID
        fi
        c_a="" c_b=""
        for ((i = 0; i < 3000; i++)); do
            sleep 0.1
            for side in a b; do
                pid=$([ $side = a ] && echo "$pid_a" || echo "$pid_b")
                kill -0 "$pid" 2>/dev/null || {
                    echo "duel: daemon $side died:" >&2
                    cat "$work/$side/err" >&2
                    exit 3
                }
            done
            if [ -z "$c_a" ] && [ "$(recorded "$work/a/store.db")" -eq "$sessions" ]; then
                c_a=$(cpu_ticks "$pid_a")
            fi
            if [ -z "$c_b" ] && [ "$(recorded "$work/b/store.db")" -eq "$sessions" ]; then
                c_b=$(cpu_ticks "$pid_b")
            fi
            [ -n "$c_a" ] && [ -n "$c_b" ] && break
        done
        kill -TERM "$pid_a" "$pid_b"
        wait "$pid_a" "$pid_b" || true
        pids=()
        if [ -z "$c_a" ] || [ -z "$c_b" ]; then
            echo "duel: a drain did not finish" >&2
            exit 3
        fi
        read -r ua ub ratio < <(python3 -c "
ca, cb, t, n = $c_a, $c_b, $ticks, $sessions
ua, ub = ca * 1e6 / t / n, cb * 1e6 / t / n
print(f'{ua:.1f} {ub:.1f} {ub / ua:.3f}')")
        echo "round $r, $first first: CPU per delivery A $ua µs, B $ub µs (B/A $ratio)"
        ratios+=("$ratio")
    done
done
echo "CPU per delivery, B/A by round: ${ratios[*]}"
