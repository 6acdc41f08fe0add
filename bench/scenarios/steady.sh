# shellcheck shell=bash
# Scenario 4: a steady stream of sessions (BENCH_STEADY_RATE per second, default 1 000, for
# BENCH_STEADY_SECONDS, default 60) POSTed to /internal/v1/sessions, each delivered to one
# endpoint: a receiver answering 204. Figure: the latency from each ingest request to its
# webhook's arrival (p50, p99, p99.9, max), and the plot steady-latency.png.
# build/bench_steady (bench/bench_steady.c) is both the load generator and the receiver.
# Sourced by bench/run (see the contract at the top of bench/run).

if [ "$BENCH_SMOKE" -eq 1 ]; then
    steady_rate=${BENCH_STEADY_RATE:-100}
    steady_seconds=${BENCH_STEADY_SECONDS:-2}
else
    steady_rate=${BENCH_STEADY_RATE:-1000}
    steady_seconds=${BENCH_STEADY_SECONDS:-60}
fi
# The harness alone (no daemon), and the disk alone (bench/disk_commits.py: SQLite alone
# committing each session's bytes, WAL and synchronous=FULL, on the daemon's core and disk),
# run at the same rate for at most 10 s per run.
steady_alone_seconds=$(python3 -c "print(min(10.0, float('$steady_seconds')))")
steady_conns=8 # pre-opened ingest connections; more are opened when all wait for answers
steady_bin=$(dirname "$bench_load")/bench_steady
[ -x "$steady_bin" ] || bench_die "$steady_bin is missing (make build)"
bench_need_pkgs gnuplot-nox

bench_param steady "$(printf '{"rate_per_s": %s, "seconds": %s, "session_bytes": %s, %s, %s}' \
    "$steady_rate" "$steady_seconds" "$(wc -c <"$template")" \
    "\"connections\": \"$steady_conns, more opened as needed (at most 256)\"" \
    "\"harness_seconds\": $steady_alone_seconds")"
mkdir -p "$work/steady"
for ((r = 1; r <= runs; r++)); do
    rundir=$work/steady/run$r
    mkdir -p "$rundir"

    # The harness alone: bench_steady POSTs to its own receiver (answers 204).
    recv_port=$(bench_free_port)
    bench_log "steady run $r/$runs: the harness alone (${steady_alone_seconds}s at $steady_rate/s)"
    BENCH_STEADY_TOKEN=$BENCH_TOKEN bench_pinned "$load_core" "$steady_bin" \
        --ingest "$recv_port" --listen "$recv_port" --expect 204 --partner harness \
        --template "$template" --rate "$steady_rate" --seconds "$steady_alone_seconds" \
        --latencies "$rundir/harness.txt" --wait 5 >"$rundir/harness.json" ||
        bench_die "steady run $r: the harness alone failed: $(cat "$rundir/harness.json")"

    # The disk alone, just before the daemon, on its core and in its directory.
    bench_log "steady run $r/$runs: the disk alone (${steady_alone_seconds}s at $steady_rate commits/s)"
    bench_pinned "$sut_core" python3 "$BENCH_SRC/bench/disk_commits.py" --db "$rundir/disk.db" \
        --template "$template" --rate "$steady_rate" --seconds "$steady_alone_seconds" \
        >"$rundir/disk.json" 2>"$rundir/disk.err" ||
        bench_die "steady run $r: the disk alone failed: $(cat "$rundir/disk.err")"

    # The daemon: one partner, one endpoint pointing at bench_steady's receiver.
    recv_port=$(bench_free_port)
    vhb setup --vocohook "$BENCH_VOCOHOOK" --db "$rundir/store.db" \
        --endpoint-url "http://127.0.0.1:$recv_port/hook" >"$rundir/setup.json"
    partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
        <"$rundir/setup.json")
    # shellcheck disable=SC2086
    bench_start_daemon "$rundir" "$rundir/store.db" "$sut_core" ${BENCH_STEADY_ARGS:-}
    bench_log "steady run $r/$runs: ${steady_seconds}s at $steady_rate sessions/s"
    BENCH_STEADY_TOKEN=$BENCH_TOKEN bench_pinned "$load_core" "$steady_bin" \
        --ingest "$VH_PORT" --listen "$recv_port" --partner "$partner" --template "$template" \
        --rate "$steady_rate" --seconds "$steady_seconds" --prefix "st$r-" \
        --conns "$steady_conns" --latencies "$rundir/latencies.txt" \
        --timeline "$rundir/timeline.txt" >"$rundir/steady.json" ||
        bench_die "steady run $r: sessions rejected or lost: $(cat "$rundir/steady.json")"
    bench_stop "$VH_PID"

    # The figures: bench_steady's summary, one sample per percentile (the harness's own
    # p99 with the harness's summary as its detail, the disk's with the disk's).
    python3 - "$rundir/steady.json" "$rundir/harness.json" "$rundir/disk.json" "$r" \
        >"$rundir/values.txt" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
with open(sys.argv[2]) as f:
    h = json.load(f)
with open(sys.argv[3]) as f:
    disk = json.load(f)
lat = d["latency_ms"]
for series, value, src in (("p50", lat["p50"], 1), ("p99", lat["p99"], 1),
                           ("p999", lat["p999"], 1), ("max", lat["max"], 1),
                           ("p99_due", d["latency_from_due_ms"]["p99"], 1),
                           ("ingest_p99", d["ingest_answer_ms"]["p99"], 1),
                           ("harness_p99", h["latency_ms"]["p99"], 2),
                           ("disk_p50", disk["latency_ms"]["p50"], 3),
                           ("disk_p99", disk["latency_ms"]["p99"], 3)):
    print(series, value, sys.argv[src])
run = sys.argv[4]
print(f"bench: steady run {run}: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
      f"p99.9 {lat['p999']:.2f} ms, max {lat['max']:.1f} ms; {d['arrived']}/{d['sessions']} "
      f"arrived, sent at {d['send_rate']:.0f}/s on up to {d['ingest_connections']} "
      f"connections; the harness alone: p99 {h['latency_ms']['p99']:.2f} ms; the disk alone: "
      f"p50 {disk['latency_ms']['p50']:.2f} ms, p99 {disk['latency_ms']['p99']:.2f} ms",
      file=sys.stderr)
if d["capped"]:
    print(f"bench: steady run {run}: {d['capped']} sessions waited for a free ingest "
          f"connection (send lag p99 {d['send_lag_ms']['p99']:.0f} ms); counted from their due "
          f"time, p99 is {d['latency_from_due_ms']['p99']:.1f} ms", file=sys.stderr)
EOF
    while read -r series value src; do
        vhb value --samples "$samples" --scenario steady --series "$series" --run "$r" \
            --value "$value" --detail "$(cat "$src")"
    done <"$rundir/values.txt"
    rm -f "$rundir"/store.db*
done

# The plot: every run's latencies, and the harness alone (last run). The data files are
# linked into one directory under plain names, so that no path reaches gnuplot's strings.
plotdir=$work/steady/plot
mkdir -p "$plotdir"
ln -sf "$rundir/harness.txt" "$plotdir/harness.txt"
plot_files=""
for ((r = 1; r <= runs; r++)); do
    ln -sf "$work/steady/run$r/latencies.txt" "$plotdir/run$r.txt"
    plot_files="$plot_files run$r.txt"
done
plot_subtitle="$steady_rate sessions/s for $steady_seconds s, $runs run(s), $(date -u '+%Y-%m-%d %H:%M UTC')"
(
    cd "$plotdir" &&
        gnuplot -e "outfile='steady-latency.png'; files='$plot_files'; floor='harness.txt'" \
            -e "target=10; subtitle='$plot_subtitle'" "$BENCH_SRC/bench/steady-latency.gp"
) >"$plotdir/gnuplot.log" 2>&1 || bench_die "gnuplot failed: $(cat "$plotdir/gnuplot.log")"
mv "$plotdir/steady-latency.png" "$out/steady-latency.png"
