#!/usr/bin/env python3
"""Scenario 4's disk, measured in the same run: what committing each session durably costs,
with nothing else in the way.

SQLite alone, in a file next to the daemon's: WAL, synchronous=FULL, one transaction per
session, each holding the session's bytes in a row keyed by a random UUID (so, like the
store's session_id index, every commit also dirties a page of an index at a random place).
The commits are paced by the clock at the scenario's rate. A commit's latency runs from its
due time to the end of COMMIT, so a commit that falls behind counts its wait, as an ingest
would. It says how the disk behaved in this run: the daemon's commits wait on the same
`fdatasync`. It is not a strict bound: under a stall, a group commit lets the sessions that
queued up share one sync, where these commits wait in line.

Usage: disk_commits.py --db PATH --template FILE --rate N --seconds S
Prints JSON: {"commits", "seconds", "rate", "latency_ms": {"p50", "p99", "p999", "max"}}.
"""
import argparse
import json
import math
import os
import sqlite3
import sys
import time
import uuid


def percentile(values, q):
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(q * len(values)))
    return values[min(rank, len(values)) - 1]


def remove_db(path):
    """Removes the database file and its WAL and shared-memory files, where they exist."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    a = ap.parse_args()
    if a.rate <= 0 or a.seconds <= 0:
        sys.exit("disk_commits: --rate and --seconds must be positive")
    with open(a.template, "rb") as f:
        body = f.read()
    remove_db(a.db)
    db = sqlite3.connect(a.db, isolation_level=None)
    if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
        sys.exit("disk_commits: cannot switch to WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL UNIQUE,"
               " body BLOB NOT NULL)")

    n = int(a.rate * a.seconds)
    interval = 1.0 / a.rate
    lat = []
    start = time.monotonic() + 0.05
    for i in range(n):
        due = start + i * interval
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO sessions (session_id, body) VALUES (?, ?)",
                   (str(uuid.uuid4()), body))
        db.execute("COMMIT")
        lat.append((time.monotonic() - due) * 1000.0)
    elapsed = time.monotonic() - start
    db.close()
    remove_db(a.db)
    lat.sort()
    print(json.dumps({
        "commits": n,
        "seconds": round(elapsed, 3),
        "rate": round(n / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": {"p50": round(percentile(lat, 0.50), 3),
                       "p99": round(percentile(lat, 0.99), 3),
                       "p999": round(percentile(lat, 0.999), 3),
                       "max": round(lat[-1], 3) if lat else 0.0},
    }))


if __name__ == "__main__":
    main()
