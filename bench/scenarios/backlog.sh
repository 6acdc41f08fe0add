# shellcheck shell=bash
# Scenario 5: the daemon drains a large backlog and a small one into nginx answering 204.
# Figures: the daemon's peak RSS (VmHWM) and its CPU time (user + system) per delivery at
# both sizes, which should be the same: nothing in the daemon may grow with the backlog.
# Sizes: BENCH_BACKLOG (default 1 000 000: 4.5 GB, 4.5-8 min to load and 2-4 min to drain on
# a shared 2-core box) and BENCH_BACKLOG_SMALL (default 10 000). The small backlog is drained
# BENCH_RUNS times, the large one BENCH_BACKLOG_RUNS times (default 1: each further run
# copies 4.5 GB and drains it again).
# Sourced by bench/run (see the contract at the top of bench/run).

if [ "$BENCH_SMOKE" -eq 1 ]; then
    backlog_big=${BENCH_BACKLOG:-2000}
    backlog_small=${BENCH_BACKLOG_SMALL:-200}
else
    backlog_big=${BENCH_BACKLOG:-1000000}
    backlog_small=${BENCH_BACKLOG_SMALL:-10000}
fi
backlog_big_runs=${BENCH_BACKLOG_RUNS:-1}
# Loading: the product's own ingest call (bench_load, daemon stopped), under eatmydata, which
# turns fsync into a no-op for the loader only: one fsync per session would take longer
# than the drain itself (0.5 ms each here), and a crash of the machine while loading does
# not matter. The daemon that drains runs without it (synchronous=FULL, as in production).
bench_need_pkgs eatmydata
clk_tck=$(getconf CLK_TCK)
mkdir -p "$work/backlog"

# backlog_load NAME N: a store with one partner, one endpoint (nginx) and N pending
# deliveries, in $work/backlog/NAME.db; prints the load time in seconds.
backlog_load() {
    local name=$1 n=$2 db=$work/backlog/$1.db partner t0
    vhb setup --vocohook "$BENCH_VOCOHOOK" --db "$db" \
        --endpoint-url "http://127.0.0.1:$nginx_port/hook" >"$work/backlog/$name.setup.json"
    partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
        <"$work/backlog/$name.setup.json")
    t0=$(bench_now_ms)
    bench_pinned "$load_core" eatmydata "$bench_load" --db "sqlite:$db" --partner "$partner" \
        --template "$template" --count "$n" >"$work/backlog/$name.load.txt" ||
        bench_die "backlog: loading $n sessions failed"
    python3 -c "print(round(($(bench_now_ms) - $t0) / 1000, 1))"
}

# backlog_drain NAME N RUN LAST SIZE: copies the store NAME (moves it when LAST is 1),
# starts the daemon on it, waits until all N deliveries succeeded, and records the daemon's
# peak RSS, its CPU per delivery and the drain rate as the samples of SIZE (small, large).
backlog_drain() {
    local name=$1 n=$2 r=$3 last=$4 size=$5 rundir=$work/backlog/$1.run$3 f t0 series value
    mkdir -p "$rundir"
    for f in "$name.db" "$name.db-wal" "$name.db-shm"; do
        if [ ! -e "$work/backlog/$f" ]; then
            continue
        elif [ "$last" -eq 1 ]; then
            mv "$work/backlog/$f" "$rundir/${f/$name/store}"
        else
            cp "$work/backlog/$f" "$rundir/${f/$name/store}"
        fi
    done
    sync # the loader's unsynced writes (eatmydata) and any copy: written out before the run
    t0=$(bench_now_ms)
    bench_start_daemon "$rundir" "$rundir/store.db" "$sut_core"
    bench_log "backlog run $r: draining $n deliveries"
    bench_pinned "$load_core" python3 - "$rundir/store.db" "$n" "$t0" "$VH_PID" "$clk_tck" \
        >"$rundir/figures.json" <<'EOF' || bench_die "backlog run $r: the drain of $n failed"
# Waits until no delivery is pending or in flight, reads the daemon's CPU time and peak RSS
# at once (/proc/PID/stat utime + stime, all threads; /proc/PID/status VmHWM), then the
# drain's figures from the store, as vhbench.py drain does. Polls with an index seek, where
# vhbench.py drain's GROUP BY scans every delivery (0.15 s per poll at 1 000 000, on the
# core nginx runs on).
import json, sqlite3, sys, time
db, pid = sys.argv[1], sys.argv[4]
n, t0_ms, tck = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
timeout = max(120, n // 20)
deadline = time.monotonic() + timeout
busy = "SELECT EXISTS(SELECT 1 FROM deliveries WHERE state IN ('pending', 'in_flight'))"
while True:
    time.sleep(0.2)
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            (left,) = con.execute(busy).fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        left = 1
    if not left:
        break
    if time.monotonic() > deadline:
        sys.exit(f"backlog: not drained after {timeout} s")
with open(f"/proc/{pid}/comm") as f:
    if f.read().strip() != "vocohook":
        sys.exit(f"backlog: pid {pid} is not the daemon")
with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
utime, stime = int(fields[11]), int(fields[12])
ticks = utime + stime
with open(f"/proc/{pid}/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
try:
    states = dict(con.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
    (last_ms,) = con.execute(
        "SELECT max(updated_ms) FROM deliveries WHERE state = 'succeeded'").fetchone()
    (first_ms, attempts, non2xx) = con.execute(
        "SELECT min(started_ms), count(*), sum(http_status IS NULL OR http_status / 100 != 2)"
        " FROM attempts").fetchone()
finally:
    con.close()
if states.get("succeeded", 0) != n or attempts != n or non2xx:
    sys.exit(f"backlog: deliveries {states}, {attempts} attempts, {non2xx} failed")
secs = (last_ms - t0_ms) / 1000.0
print(json.dumps({"deliveries": n, "seconds": secs, "rate": n / secs,
                  "first_attempt_after_s": (first_ms - t0_ms) / 1000.0, "attempts": attempts,
                  "cpu_s": ticks / tck, "cpu_user_s": utime / tck, "cpu_system_s": stime / tck,
                  "cpu_us_per_delivery": ticks / tck / n * 1e6,
                  "vm_hwm_kb": hwm, "rss_mb": hwm / 1024}))
EOF
    bench_stop "$VH_PID"
    python3 - "$rundir/figures.json" "$size" >"$rundir/values.txt" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
size = sys.argv[2]
print(f"cpu_us_{size}", d["cpu_us_per_delivery"])
print(f"rate_{size}", d["rate"])
print("rss_mb" if size == "large" else "rss_mb_small", d["rss_mb"])
print(f"bench: backlog: {d['deliveries']} deliveries: peak RSS {d['rss_mb']:.1f} MB, "
      f"CPU {d['cpu_us_per_delivery']:.0f} us/delivery ({d['cpu_user_s']:.1f} s user, "
      f"{d['cpu_system_s']:.1f} s system), "
      f"{d['rate']:.0f} deliveries/s", file=sys.stderr)
EOF
    while read -r series value; do
        vhb value --samples "$samples" --scenario backlog --series "$series" --run "$r" \
            --value "$value" --detail "$(cat "$rundir/figures.json")"
    done <"$rundir/values.txt"
    rm -f "$rundir"/store.db*
}

bench_log "backlog: loading $backlog_small and $backlog_big sessions (daemon stopped)"
load_small_s=$(backlog_load small "$backlog_small")
load_big_s=$(backlog_load big "$backlog_big")
bench_log "backlog: loaded $backlog_small in ${load_small_s}s, $backlog_big in ${load_big_s}s"
backlog_store_mb=$(($(stat -c %s "$work/backlog/big.db") / 1048576))
bench_param backlog "$(printf '{"large": %s, "small": %s, "large_runs": %s, "small_runs": %s, %s}' \
    "$backlog_big" "$backlog_small" "$backlog_big_runs" "$runs" \
    "\"load_large_s\": $load_big_s, \"load_small_s\": $load_small_s, \"store_large_mb\": $backlog_store_mb")"
# Small and large drains alternate, so that a change in the machine's load shows in both.
for ((r = 1; r <= runs || r <= backlog_big_runs; r++)); do
    if [ "$r" -le "$runs" ]; then
        backlog_drain small "$backlog_small" "$r" "$((r == runs))" small
    fi
    if [ "$r" -le "$backlog_big_runs" ]; then
        backlog_drain big "$backlog_big" "$r" "$((r == backlog_big_runs))" large
    fi
done
