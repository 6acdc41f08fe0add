# shellcheck shell=bash
# Scenario 8: the drain of scenario 1 on PostgreSQL: one node, then two nodes on one
# database (the same backlog, a fresh copy of the database each time). Series: one, two.
# Sourced by bench/run (see the contract at the top of bench/run).
#
# A throw-away PostgreSQL 15 (scripts/pg-test-server: fsync on, synchronous_commit on,
# default settings otherwise) is started here and stopped at the end, also on failure.
# The backlog is loaded once into the database `vocohook` (bench_load, daemon stopped);
# each run drains a copy of it (CREATE DATABASE … TEMPLATE vocohook). The figure is N over
# the time from just before the first node is started to the last `succeeded` committed,
# read from the store (updated_ms), as in scenario 1.
#
# Pinning (two cores or more): the nodes on core $sut_core, nginx on core $load_core as in
# scenario 1, PostgreSQL unpinned (its backends go wherever the scheduler puts them). So
# both series have the same cores; the second node adds a second dispatcher, engine and database connection, not a
# core. BENCH_PG_NODE_CORES and BENCH_PG_SERVER_CORES (taskset lists, "" for unpinned)
# change that; BENCH_PG_SESSIONS the backlog.
#
# What bounds it (measured: bench/pg_vhbench.py pgdrain samples pg_stat_activity at each
# poll; the sample's detail has the counts and every process's CPU): the CPU. PostgreSQL
# spends 235-290 us of CPU per delivery (claim, pipelined record, notify, the endpoint's
# last delivery), a node 70-95 us; with two nodes both cores are ~80 % busy. (Before the
# record batch was pipelined and stopped locking the endpoint row, one node waited on its
# round trips and two nodes queued on that row: see docs/BENCHMARKS.md.)

bench_need_pkgs postgresql
pg_helper=$BENCH_SRC/bench/pg_vhbench.py
pgh() { python3 "$pg_helper" "$@"; }

# PostgreSQL drains slower than SQLite here: half of scenario 1's backlog keeps the
# scenario (load, then $runs × two drains) under ~3 minutes at the default size.
pg_sessions=${BENCH_PG_SESSIONS:-$(((sessions + 1) / 2))}
pg_node_cores=${BENCH_PG_NODE_CORES-$sut_core}
pg_server_cores=${BENCH_PG_SERVER_CORES-}
pg_timeout=$(python3 -c "print(max(120, $pg_sessions // 10))")
mkdir -p "$work/pg"

# The server's directory must be reachable by the `postgres` user when we run as root:
# not under $work (mode 700) but a directory of its own under /tmp.
pg_dir=$(mktemp -d /tmp/vh-bench-pg-XXXXXX)
pg_stop_server() {
    if [ -n "${pg_dir:-}" ]; then
        "$BENCH_SRC/scripts/pg-test-server" stop "$pg_dir" >&2 || true
        pg_dir=""
    fi
}
# Stop the server however this script ends (bench_die included).
bench_on_exit pg_stop_server
# shellcheck disable=SC2046
pg_url=$($(bench_pin_cmd "$pg_server_cores") "$BENCH_SRC/scripts/pg-test-server" start "$pg_dir") ||
    bench_die "pg: the PostgreSQL server did not start"
pg_base=${pg_url%/*}
pg_postmaster=$(head -1 "$pg_dir/data/postmaster.pid")
bench_log "pg: PostgreSQL 127.0.0.1:$(cat "$pg_dir/port") (postmaster $pg_postmaster, cores: ${pg_server_cores:-any})"

pg_psql() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$pg_base/postgres" -c "$1" ||
        bench_die "pg: psql failed: $1"
}
# FILE_COPY (PostgreSQL 15+): a checkpoint and a copy of the files, faster than the default
# of WAL-logging every block of the copy.
pg_copy_strategy=""
pg_version=$(pg_psql "SHOW server_version_num")
if [ "$pg_version" -ge 150000 ]; then
    pg_copy_strategy="STRATEGY FILE_COPY"
fi

bench_param pg "$(printf '{"sessions": %s, "body_bytes": %s, "postgresql": "15, fsync on, synchronous_commit on", "node_cores": "%s", "postgresql_cores": "%s", "nginx_core": %s}' \
    "$pg_sessions" "$(wc -c <"$body")" "${pg_node_cores:-any}" "${pg_server_cores:-any}" \
    "$load_core")"

bench_log "pg: loading $pg_sessions sessions (no node running)"
vhb setup --vocohook "$BENCH_VOCOHOOK" --db "$pg_url" \
    --endpoint-url "http://127.0.0.1:$nginx_port/hook" >"$work/pg/setup.json"
partner=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partner_id"])' \
    <"$work/pg/setup.json")
"$bench_load" --db "$pg_url" --partner "$partner" --template "$template" \
    --count "$pg_sessions" >&2

# pg_drain_run RUN SERIES NODES: drains a fresh copy of the backlog with NODES nodes and
# records the sample.
pg_drain_run() {
    local r=$1 series=$2 nodes=$3 rundir db url t0 n pids=() ports=() ngx0 ngx1
    local pg0 pg1 extra attempts=() node_cpu=()
    rundir=$work/pg/run$r-$series
    db=vh_${series}_$r
    url=$pg_base/$db
    mkdir -p "$rundir"
    pg_psql "CREATE DATABASE $db TEMPLATE vocohook $pg_copy_strategy" >/dev/null
    pg_psql "CHECKPOINT" >/dev/null
    pg0=$(pgh cputime "$pg_postmaster")
    ngx0=$(pgh cputime "$NGINX_PID")
    t0=$(bench_now_ms)
    for ((n = 1; n <= nodes; n++)); do
        bench_start_daemon "$rundir/n$n" "$url" "$pg_node_cores" --node-id "n$n"
        pids+=("$VH_PID")
        ports+=("$VH_PORT")
    done
    bench_log "pg run $r/$runs: $nodes node(s) draining $pg_sessions deliveries"
    bench_pinned "$load_core" python3 "$pg_helper" pgdrain --url "$url" --count "$pg_sessions" \
        --t0-ms "$t0" --timeout "$pg_timeout" >"$rundir/drain.json"
    for ((n = 0; n < nodes; n++)); do
        attempts+=("$(pgh attempts "${ports[$n]}")")
        node_cpu+=("$(pgh cputime "${pids[$n]}")")
    done
    ngx1=$(pgh cputime "$NGINX_PID")
    for ((n = 0; n < nodes; n++)); do
        bench_stop "${pids[$n]}"
    done
    sleep 0.3 # the nodes' backends exit and are reaped
    pg1=$(pgh cputime "$pg_postmaster")
    extra=$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
att = [int(x) for x in sys.argv[3].split()]
cpu = [float(x) for x in sys.argv[4].split()]
pg = float(sys.argv[6]) - float(sys.argv[5])
ngx = float(sys.argv[8]) - float(sys.argv[7])
print(json.dumps({"nodes": n, "attempts_by_node": att, "node_cpu_s": cpu,
                  "postgresql_cpu_s": round(pg, 3), "nginx_cpu_s": round(ngx, 3),
                  "node_cpu_us_per_delivery": round(sum(cpu) / d["deliveries"] * 1e6, 1),
                  "postgresql_cpu_us_per_delivery": round(pg / d["deliveries"] * 1e6, 1),
                  "cpu_busy_of_all_cores": round((sum(cpu) + pg + ngx) / (d["seconds"] * int(sys.argv[9])), 2)}))' \
        "$rundir/drain.json" "$nodes" "${attempts[*]}" "${node_cpu[*]}" "$pg0" "$pg1" \
        "$ngx0" "$ngx1" "$BENCH_NCPU")
    bench_log "pg run $r/$runs, $nodes node(s): $(cat "$rundir/drain.json") $extra"
    vhb sample --samples "$samples" --scenario pg --series "$series" --run "$r" \
        --drain "$rundir/drain.json" --extra "$extra"
    pg_psql "DROP DATABASE $db WITH (FORCE)" >/dev/null
}

for ((r = 1; r <= runs; r++)); do
    pg_drain_run "$r" one 1
    pg_drain_run "$r" two 2
done

pg_stop_server
