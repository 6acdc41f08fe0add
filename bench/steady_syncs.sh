#!/usr/bin/env bash
# Where scenario 4's writer time goes: one build of `vocohook serve` under scenario 4's steady
# load, with every `fdatasync`/`fsync` of its threads timed (docs/BENCHMARKS.md, session 27).
#
#   bench/steady_syncs.sh BUILD [SECONDS] [RATE]
#
# BUILD is a build directory (with `vocohook` and `bench_steady`). A fresh store, the daemon
# on core 0 and bench_steady on core 1 (load generator and receiver) for SECONDS (default
# 20) at RATE sessions/s (default 1 000), as bench/scenarios/steady.sh runs it. `perf trace`
# times the syncs of the whole machine meanwhile, and the daemon's are grouped by thread
# and file. Prints the ingest → webhook latency (p50, p99), the bytes the daemon wrote per
# session (/proc/PID/io), and per thread and file: syncs, p50, p99 and their sum, and the
# share of the run's wall time that sum is. Every write takes its turn on one writer, so the
# shares add up to how busy that writer's syncs keep it. Needs perf and root.
set -euo pipefail

if [ $# -lt 1 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
build=$1
seconds=${2:-20}
rate=${3:-1000}
BENCH_SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$BENCH_SRC/bench/lib.sh"
[[ $seconds =~ ^[1-9][0-9]{0,3}$ ]] || bench_die "steady_syncs: SECONDS must be 1..9999 (got '$seconds')"
[[ $rate =~ ^[1-9][0-9]{0,5}$ ]] || bench_die "steady_syncs: RATE must be 1..999999 (got '$rate')"
[ "$(id -u)" -eq 0 ] || bench_die "steady_syncs: perf trace needs root"
for f in vocohook bench_steady; do
    [ -x "$build/$f" ] || bench_die "steady_syncs: no $f in $build"
done
for tool in perf taskset python3; do
    command -v "$tool" >/dev/null || bench_die "steady_syncs: $tool is needed"
done
BENCH_NCPU=$(nproc)
[ "$BENCH_NCPU" -ge 2 ] || bench_die "steady_syncs: needs two CPUs (daemon on core 0, load on core 1)"
BENCH_VOCOHOOK=$build/vocohook
BENCH_TOKEN="steady-syncs-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

work=$(mktemp -d /tmp/vh-ssyncs-XXXXXX)
trap 'bench_cleanup; rm -rf "$work"' EXIT

recv_port=$(bench_free_port)
python3 "$BENCH_SRC/bench/vhbench.py" setup --vocohook "$BENCH_VOCOHOOK" --db "$work/store.db" \
    --endpoint-url "http://127.0.0.1:$recv_port/hook" >"$work/setup.json"
partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
    <"$work/setup.json")
bench_start_daemon "$work" "$work/store.db" 0
vh_pid=$VH_PID

written() { awk '/^write_bytes/ {print $2}' "/proc/$vh_pid/io"; }
w0=$(written)
# The load is perf's workload, so the trace spans it exactly. The whole machine is traced
# (-a): -p would miss the threads the daemon starts later (the store's commit thread starts
# with the first ingest); the daemon's threads are picked out below. perf trace returns 0
# whatever its workload returns, so the load's status goes through a file.
# shellcheck disable=SC2016 # the positional parameters are the inner shell's
perf trace --sort-events -e fdatasync,fsync -a -o "$work/trace.txt" -- \
    sh -c 'BENCH_STEADY_TOKEN=$1 taskset -c 1 "$2" --ingest "$3" --listen "$4" --partner "$5" \
        --template "$6" --rate "$7" --seconds "$8" --prefix ss- --conns 8 >"$9/steady.json"
        echo $? >"$9/steady.rc"' \
    steady "$BENCH_TOKEN" "$build/bench_steady" "$VH_PORT" "$recv_port" "$partner" \
    "$BENCH_SRC/bench/session-2k.json" "$rate" "$seconds" "$work" \
    >"$work/perf.out" 2>"$work/perf.err" ||
    bench_die "steady_syncs: perf trace failed: $(tail -3 "$work/perf.err")"
[ "$(cat "$work/steady.rc" 2>/dev/null)" = 0 ] ||
    bench_die "steady_syncs: sessions rejected or lost: $(cat "$work/steady.json" 2>/dev/null)"
w1=$(written)

python3 - "$work" "$w0" "$w1" "$seconds" "$vh_pid" <<'EOF'
import json, os, re, sys
from collections import defaultdict

work, w0, w1, seconds, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
with open(f"{work}/steady.json") as f:
    d = json.load(f)
# The daemon's threads (all still running): the trace holds the whole machine's syncs.
tids = {int(t) for t in os.listdir(f"/proc/{pid}/task")}
syncs = defaultdict(list)
# A sync alone on the machine is one line:
#   "   12.345 ( 0.512 ms): vh-store/1234 fdatasync(fd: 4)    = 0"
# one that overlapped another is two, its start and, later, its end:
#   "   12.345 (         ): vh-store/1234 fdatasync(fd: 4)                 ..."
#   "   12.857 ( 0.512 ms): vh-store/1234  ... [continued]: fdatasync())  = 0"
whole = re.compile(r"\(\s*([\d.]+) ms\): (.+?)/(\d+) (?:fdatasync|fsync)\(fd: (\d+)")
begun = re.compile(r"\(\s+\): (.+?)/(\d+) (?:fdatasync|fsync)\(fd: (\d+)")
ended = re.compile(r"\(\s*([\d.]+) ms\): (.+?)/(\d+)\s+\.\.\. \[continued\]: (?:fdatasync|fsync)\(")
open_fd = {}  # tid -> fd of its sync under way
with open(f"{work}/trace.txt") as f:
    for line in f:
        m = whole.search(line)
        if m:
            tid, key, ms = int(m.group(3)), (m.group(2), int(m.group(4))), float(m.group(1))
        else:
            m = begun.search(line)
            if m:
                open_fd[int(m.group(2))] = (m.group(1), int(m.group(3)))
                continue
            m = ended.search(line)
            if not m or int(m.group(3)) not in open_fd:
                continue
            tid, ms = int(m.group(3)), float(m.group(1))
            key = open_fd.pop(tid)
        if tid in tids:
            syncs[key].append(ms)
if not syncs:
    sys.exit(f"steady_syncs: no sync of the daemon in {work}/trace.txt")
lat = d["latency_ms"]
n = d["sessions"]
print(f"{n} sessions at {d.get('send_rate', 0):.0f}/s: latency p50 {lat['p50']:.2f} ms, "
      f"p99 {lat['p99']:.2f} ms; the daemon wrote {(w1 - w0) / n / 1024:.1f} KB per session")
for (thread, fd), v in sorted(syncs.items(), key=lambda kv: -sum(kv[1])):
    v.sort()
    total = sum(v)
    print(f"  {thread} fd {fd}: {len(v)} syncs ({len(v) / n:.2f} a session), "
          f"p50 {v[len(v) // 2]:.2f} ms, p99 {v[min(len(v) - 1, int(len(v) * 0.99))]:.2f} ms, "
          f"{total / 1000:.2f} s in all, {100 * total / 1000 / seconds:.0f} % of the run")
EOF
