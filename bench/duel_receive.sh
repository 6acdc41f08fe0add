#!/usr/bin/env bash
# A duel: two builds of `vocohook receive` under scenario 6's load at the same time, so that
# a change can be weighed on a noisy machine (docs/BENCHMARKS.md, session 11).
#
#   bench/duel_receive.sh BUILD_A BUILD_B [SECONDS] [ROUNDS]
#
# BUILD_A and BUILD_B are build directories (each with a `vocohook`). Both receivers run on
# core 0 at once, each with a fresh inbox and its own `wrk -c64` on core 1 sending signed,
# unique ~2 KB webhooks (bench/receive_requests.py, bench/wrk_receive.lua) for SECONDS
# (default 6), ROUNDS times (default 3). DUEL_ARGS_A and DUEL_ARGS_B add flags to either
# receiver. Each round prints both processes' CPU per webhook (user + system of all their
# threads, from /proc/PID/stat) and the webhooks each stored; the end prints the ratios B/A.
#
# Read the CPU per webhook: the same build against itself differs by up to about 3 %. The
# throughput ratio is noisier (about ±13 %), and it favours the process with more threads,
# since the scheduler shares the core per thread: compare builds with the same --threads.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
build_a=$1
build_b=$2
seconds=${3:-6}
rounds=${4:-3}
src=$(cd "$(dirname "$0")/.." && pwd)
for b in "$build_a" "$build_b"; do
    [ -x "$b/vocohook" ] || { echo "duel: no vocohook in $b" >&2; exit 2; }
done
for tool in wrk taskset python3; do
    command -v "$tool" >/dev/null || { echo "duel: $tool is needed" >&2; exit 2; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "duel: needs two CPUs (receivers on core 0, load on core 1)" >&2
    exit 2
fi

work=$(mktemp -d /tmp/vh-duel-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

secret="whsec_duel_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
ticks=$(getconf CLK_TCK)
"$build_a/vocohook" render --timestamp 2026-03-15T14:32:08.000Z "$src/bench/session-2k.json" \
    >"$work/body.json"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start_receiver SIDE BUILD ARGS: starts it (a child of this shell); sets RPID and RPORT.
start_receiver() {
    local side=$1 build=$2 args=$3 i
    # shellcheck disable=SC2086
    env -i PATH="$PATH" VOCOHOOK_SECRETS="$secret" taskset -c 0 "$build/vocohook" receive \
        --listen 127.0.0.1:0 --db "$work/$side/inbox.db" $args \
        >"$work/$side/out" 2>"$work/$side/err" &
    RPID=$!
    pids+=("$RPID")
    for ((i = 0; i < 200; i++)); do
        # The file may not exist yet: the child opens it.
        RPORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/$side/out" 2>/dev/null || true)
        [ -n "$RPORT" ] && return
        kill -0 "$RPID" 2>/dev/null || break
        sleep 0.05
    done
    echo "duel: receiver $side did not start:" >&2
    cat "$work/$side/err" >&2
    exit 3
}

ratios=()
for ((r = 1; r <= rounds; r++)); do
    for side in a b; do
        rm -rf "${work:?}/$side"
        mkdir -p "$work/$side"
        python3 "$src/bench/receive_requests.py" gen --body "$work/body.json" --secret "$secret" \
            --count $((seconds * 15000)) --out "$work/$side/req.txt"
    done
    pids=()
    start_receiver a "$build_a" "${DUEL_ARGS_A:-}"
    pid_a=$RPID port_a=$RPORT
    start_receiver b "$build_b" "${DUEL_ARGS_B:-}"
    pid_b=$RPID port_b=$RPORT
    c0_a=$(cpu_ticks "$pid_a")
    c0_b=$(cpu_ticks "$pid_b")
    for side in a b; do
        port=$([ $side = a ] && echo "$port_a" || echo "$port_b")
        taskset -c 1 wrk --timeout 30s -t1 -c64 -d"${seconds}s" -s "$src/bench/wrk_receive.lua" \
            "http://127.0.0.1:$port/webhook" -- "$work/body.json" "$work/$side/req.txt" \
            >"$work/$side/wrk.txt" 2>&1 &
        pids+=($!)
    done
    wait "${pids[2]}" "${pids[3]}"
    c_a=$(($(cpu_ticks "$pid_a") - c0_a))
    c_b=$(($(cpu_ticks "$pid_b") - c0_b))
    kill -TERM "$pid_a" "$pid_b"
    wait "$pid_a" "$pid_b" || true
    pids=()
    line=$(python3 - "$work" "$c_a" "$c_b" "$ticks" <<'PY'
import json, re, sys
work, ca, cb, ticks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = []
for side, c in (("a", ca), ("b", cb)):
    text = open(f"{work}/{side}/wrk.txt").read()
    summary = json.loads(re.search(r"WRKJSON (\{.*\})", text).group(1))
    n = summary["requests"]
    bad = {k: summary[k] for k in ("duplicate", "rejected", "exhausted") if summary.get(k)}
    bad.update({k: v for k, v in summary.get("errors", {}).items() if v})
    if bad or n == 0:
        sys.exit(f"duel: receiver {side}: {n} webhooks, {bad or 'none stored'}")
    out.append((n, c * 1e6 / ticks / n))
(na, ua), (nb, ub) = out
print(f"{ua:.1f} {ub:.1f} {na} {nb} {ub / ua:.3f} {nb / na:.3f}")
PY
    )
    read -r ua ub na nb cpu_ratio n_ratio <<<"$line"
    echo "round $r: CPU per webhook A $ua µs, B $ub µs (B/A $cpu_ratio); webhooks A $na, B $nb (B/A $n_ratio)"
    ratios+=("$cpu_ratio")
done
echo "CPU per webhook, B/A by round: ${ratios[*]}"
