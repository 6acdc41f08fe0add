#!/usr/bin/env python3
"""Helpers that bench/vhbench.py does not have: a drain poller for a PostgreSQL store
(scenario 8), a process's CPU time (8 and 1b) and a node's attempt count. Python 3
standard library only; PostgreSQL is read through `psql` (read-only transactions), never
written.

  pgdrain  wait until `count` deliveries of a PostgreSQL store have succeeded; prints the
           same JSON as `vhbench.py drain` (so `vhbench.py sample --drain` takes it), plus
           what the nodes' backends were seen doing at each poll (pg_stat_activity)
  cputime  the CPU time (user + system, s) of a process and its descendants: its own, that
           of its children it has reaped, and that of its live descendants (/proc)
  attempts the vocohook_attempts_total of a running daemon (its /metrics)
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time


def die(msg):
    print(f"pg_vhbench: {msg}", file=sys.stderr)
    sys.exit(1)


def psql(url, sql):
    """One read-only query; rows as lists of strings."""
    env = dict(os.environ, PGOPTIONS="-c default_transaction_read_only=on")
    p = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t",
                        "-d", url, "-c", sql], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return [line.split("\t") for line in p.stdout.splitlines() if line]


class Session:
    """One read-only psql kept open for a series of queries (a poll): a psql per query
    costs a process and a new PostgreSQL backend each time, on the cores the nodes and
    the database share."""

    END = "__vh_end__"

    def __init__(self, url):
        env = dict(os.environ, PGOPTIONS="-c default_transaction_read_only=on")
        self.p = subprocess.Popen(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                                   "-F", "\t", "-d", url], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env)

    def query(self, sql):
        """Rows as lists of strings; RuntimeError when psql stopped (a failed query)."""
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + self.END + "\n")
        self.p.stdin.flush()
        rows = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(self.p.stderr.read().strip() or "psql stopped")
            line = line.rstrip("\n")
            if line == self.END:
                return rows
            if line:
                rows.append(line.split("\t"))

    def close(self):
        self.p.stdin.close()
        self.p.wait()


# Each poll asks two index lookups (deliveries_due: is any delivery still pending or in
# flight, has any failed for good) and counts what the nodes' backends are doing
# (pg_stat_activity): waiting on a lock (with the statement that waits), on the WAL flush,
# on the node (`idle in transaction`: the node has yet to send its next statement), or
# running. Until session 25 each poll counted the deliveries by state (a scan of the
# table) through a new psql and a new backend, every 0.1 s: about a quarter of a core.
POLL = ("SELECT 'unfinished', '', (EXISTS (SELECT 1 FROM deliveries WHERE state = 'pending')"
        " OR EXISTS (SELECT 1 FROM deliveries WHERE state = 'in_flight'))::int"
        " UNION ALL"
        " SELECT 'failed', '', (EXISTS (SELECT 1 FROM deliveries WHERE state = 'abandoned')"
        " OR EXISTS (SELECT 1 FROM deliveries WHERE state = 'canceled'))::int"
        " UNION ALL"
        " SELECT 'backend', state || ' ' || coalesce(wait_event_type || ':' || wait_event, 'CPU')"
        " || CASE WHEN wait_event_type = 'Lock' THEN ' (' || left(query, 48) || ')' ELSE '' END,"
        " count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        " AND state IN ('active', 'idle in transaction') GROUP BY 2")


def state_counts(url):
    return {k: int(n) for k, n in psql(url, "SELECT state, count(*) FROM deliveries"
                                            " GROUP BY state")}


def cmd_pgdrain(a):
    """Polls (read-only) until no delivery is pending or in flight, then checks that
    `count` deliveries succeeded; the figure comes from the store's own timestamps (the
    last delivery's commit), as in `vhbench.py drain`."""
    deadline = time.monotonic() + a.timeout
    backends, polls = {}, 0
    try:
        session = Session(a.url)
        while True:
            rows = session.query(POLL)
            flags = {kind: int(n) for kind, _, n in rows if kind in ("unfinished", "failed")}
            if flags.get("failed"):
                die(f"deliveries failed: {state_counts(a.url)}")
            if not flags.get("unfinished", 1):
                break
            polls += 1
            for kind, k, n in rows:
                if kind == "backend":
                    backends[k] = backends.get(k, 0) + int(n)
            if time.monotonic() > deadline:
                die(f"timed out after {a.timeout} s: {state_counts(a.url)}")
            time.sleep(a.interval)
        session.close()
        states = state_counts(a.url)
    except RuntimeError as e:
        die(f"polling the store: {e}")
    done = states.get("succeeded", 0)
    if done < a.count:
        die(f"deliveries failed: {states}")
    ((last_ms,),) = psql(a.url, "SELECT max(updated_ms) FROM deliveries"
                                " WHERE state = 'succeeded'")
    ((first_ms, attempts, non2xx),) = psql(
        a.url, "SELECT min(started_ms), count(*),"
               " count(*) FILTER (WHERE http_status IS NULL OR http_status / 100 != 2)"
               " FROM attempts")
    secs = (int(last_ms) - a.t0_ms) / 1000.0
    print(json.dumps({"deliveries": done, "seconds": secs, "rate": done / secs,
                      "first_attempt_after_s": (int(first_ms) - a.t0_ms) / 1000.0,
                      "attempts": int(attempts), "failed_attempts": int(non2xx),
                      "polls": polls,
                      "backends_seen": dict(sorted(backends.items(), key=lambda kv: -kv[1]))}))


def proc_stat(pid):
    """(ppid, utime + stime + cutime + cstime in ticks) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def cmd_cputime(a):
    """A process's CPU plus that of its descendants, reaped (cutime, cstime) or alive: a
    delta of two readings is what the whole tree used in between (a process that dies in
    between counts once its parent reaped it)."""
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                procs[int(name)] = st
    if a.pid not in procs:
        die(f"no process {a.pid}")
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [a.pid]
    while todo:
        pid = todo.pop()
        total += procs[pid][1]
        todo += children.get(pid, [])
    print(f"{total / os.sysconf('SC_CLK_TCK'):.3f}")


def cmd_attempts(a):
    c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
    c.request("GET", "/metrics")
    r = c.getresponse()
    text = r.read().decode()
    if r.status != 200:
        die(f"/metrics: {r.status}")
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vocohook_attempts_total"):
            total += float(line.rsplit(" ", 1)[1])
    print(int(total))


def main():
    ap = argparse.ArgumentParser(prog="pg_vhbench")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pgdrain")
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--t0-ms", type=int, required=True)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--interval", type=float, default=0.1)
    p.set_defaults(fn=cmd_pgdrain)
    p = sub.add_parser("cputime")
    p.add_argument("pid", type=int)
    p.set_defaults(fn=cmd_cputime)
    p = sub.add_parser("attempts")
    p.add_argument("port", type=int)
    p.set_defaults(fn=cmd_attempts)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
