#!/usr/bin/env python3
"""Scenario 6 (bench/scenarios/receive.sh): the signed requests wrk sends to a receiver, and
the check that the receiver stored what wrk counted. Python 3 standard library only.

  gen    --body FILE --secret S --count N --out FILE
         N signed requests, one line each, for bench/wrk_receive.lua:
             <session_id> <X-Webhook-Timestamp> <X-Webhook-Signature> <body signature> <X-Webhook-Id>
         FILE is the webhook body with `__SID__` where the session_id goes (once). Every
         line has its own session_id (a UUID v4); the timestamp is now (all lines share it,
         so a run must end well inside the receiver's window); the signature is SPEC §2's,
         sha256=HMAC-SHA256(secret, "{timestamp}.{body}"); the body signature is
         sha256=HMAC-SHA256(secret, body), the only MAC the `webhook` daemon can check.

  verify --wrk FILE --requests FILE --body FILE --kind vocohook|node|webhook --store PATH
         After a run: wrk's summary (WRKJSON of wrk_receive.lua) says every answer was a
         200 for a new session (no rejection, no duplicate, no error) and the requests did
         not run out; the store (read only) holds between `fresh` (answers wrk counted) and
         `sent` (requests written) sessions, each one of the requests sent, with the exact
         body. Prints {"stored": N, ...}; exits 1 with the reason otherwise.
           vocohook  PATH is the inbox (SQLite, opened read-only): rows of `sessions`, and
                     no job (no recording download was planned)
           node      PATH is the JSONL store of bench/peers/node-verifier
           webhook   PATH is the directory of bench/peers/webhook/store.sh (SID.json each)
"""
import argparse
import datetime
import hashlib
import hmac
import json
import os
import sqlite3
import sys


def die(msg):
    print(f"receive_requests: {msg}", file=sys.stderr)
    sys.exit(1)


def read_body(path):
    with open(path, "rb") as f:
        body = f.read()
    if body.count(b"__SID__") != 1:
        die(f"{path}: expected __SID__ exactly once")
    head, tail = body.split(b"__SID__")
    return head, tail


def cmd_gen(a):
    head, tail = read_body(a.body)
    key = a.secret.encode()
    now = datetime.datetime.now(datetime.timezone.utc)
    ts = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    prefix = ts.encode() + b"."
    # The HMAC state after the key and the fixed prefix is the same for every line: copy it.
    mac_ts = hmac.new(key, prefix + head, hashlib.sha256)
    mac_body = hmac.new(key, head, hashlib.sha256)
    rnd = os.urandom(32 * a.count)
    lines = []
    for i in range(a.count):
        sid = uuid4_text(rnd[32 * i:32 * i + 16])
        rest = sid.encode() + tail
        m1 = mac_ts.copy()
        m1.update(rest)
        m2 = mac_body.copy()
        m2.update(rest)
        lines.append(f"{sid} {ts} sha256={m1.hexdigest()} sha256={m2.hexdigest()} "
                     f"{uuid4_text(rnd[32 * i + 16:32 * i + 32])}\n")
    with open(a.out, "w") as out:
        out.writelines(lines)


def uuid4_text(b):
    """An RFC 4122 version 4 UUID from 16 random bytes (uuid.uuid4() without its cost)."""
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[b[8] & 3]}{h[17:20]}-{h[20:]}"


def stored_vocohook(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT session_id, body FROM sessions").fetchall()
        (jobs,) = con.execute("SELECT count(*) FROM jobs").fetchone()
    finally:
        con.close()
    if jobs:
        die(f"{path}: {jobs} background jobs planned (a recording download would run)")
    return [(sid, bytes(body)) for sid, body in rows]


def stored_node(path):
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                die(f"{path}:{n}: torn last line")
            rec = json.loads(line)
            out.append((rec["session_id"], rec["body"].encode()))
    return out


def stored_webhook(path):
    out = []
    for name in os.listdir(path):
        if not name.endswith(".json"):
            die(f"{path}: unexpected file {name}")
        with open(os.path.join(path, name), "rb") as f:
            out.append((name[:-5], f.read()))
    return out


def cmd_verify(a):
    with open(a.wrk) as f:
        w = json.load(f)
    what = f"{a.kind}: "
    if w["threads"] != 1:
        die(what + "wrk_receive.lua takes one wrk thread (-t1)")
    if w["exhausted"]:
        die(what + f"wrk used all {w['sent']} precomputed requests before the end of the run "
            "(raise BENCH_RECEIVE_MAX_RATE)")
    errs = {k: v for k, v in w["errors"].items() if v}
    if errs:
        die(what + f"wrk saw errors {errs}; first unexpected answer: {w['first_bad']}")
    if w["rejected"] or w["duplicate"]:
        die(what + f"{w['rejected']} answers were not a 200 and {w['duplicate']} said "
            f"duplicate; first unexpected answer: {w['first_bad']}")
    if w["fresh"] != w["requests"]:
        die(what + f"wrk counted {w['requests']} answers but {w['fresh']} stored-now 200s")
    head, tail = read_body(a.body)
    sent = set()
    with open(a.requests) as f:
        for line in f:
            if len(sent) == w["sent"]:
                break
            sent.add(line.split(" ", 1)[0])
    rows = {"vocohook": stored_vocohook, "node": stored_node, "webhook": stored_webhook}[
        a.kind](a.store)
    sids = set()
    for sid, body in rows:
        if sid in sids:
            die(what + f"session {sid} is stored twice")
        if sid not in sent:
            die(what + f"stored session {sid} was never sent")
        if body != head + sid.encode() + tail:
            die(what + f"the stored body of {sid} differs from the one sent")
        sids.add(sid)
    if not w["fresh"] <= len(sids) <= w["sent"]:
        die(what + f"the store holds {len(sids)} sessions; wrk got {w['fresh']} 200s for "
            f"{w['sent']} requests sent")
    print(json.dumps({"stored": len(sids), "answered": w["fresh"], "sent": w["sent"]}))


def main():
    ap = argparse.ArgumentParser(prog="receive_requests")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gen")
    p.add_argument("--body", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_gen)
    p = sub.add_parser("verify")
    p.add_argument("--wrk", required=True)
    p.add_argument("--requests", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--kind", required=True, choices=["vocohook", "node", "webhook"])
    p.add_argument("--store", required=True)
    p.set_defaults(fn=cmd_verify)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
