#!/usr/bin/env python3
"""The parts of bench/run that shell does badly: API calls, polling the store, statistics
and the report. Python 3 standard library only. Subcommands:

  setup      create a partner (and its endpoints) in a fresh store, through the product
  drain      wait until every delivery of a store has succeeded; print the drain sample
  count      the number of events in a store
  sample     append one measured figure (a wrk or drain summary) to the samples file
  value      append one figure given on the command line
  sign       turn bench_sign's markdown into samples
  report     samples -> latest.md and latest.json
  check      assert that a latest.json has every key the harness promises (smoke mode)

The store is only ever read here (SQLite opened read-only); everything that writes goes
through vocohook itself.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import time

LISTENING = re.compile(r"^listening on (\S+):(\d+)$")


def die(msg):
    print(f"vhbench: {msg}", file=sys.stderr)
    sys.exit(1)


# --- setup --------------------------------------------------------------------------------

def cmd_setup(a):
    """`vocohook partner create`, then (with --endpoint-url, once per endpoint) a daemon just
    long enough to create the endpoints through POST /api/v2/config/webhooks. --db is a
    SQLite path or any store URL (sqlite:…, postgres://…). Prints {"partner_id", "api_key",
    "endpoint_ids"}."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    db = a.db if re.match(r"^(sqlite:|postgres(ql)?://)", a.db) else f"sqlite:{a.db}"
    p = subprocess.run([a.vocohook, "partner", "create", "bench", "--db", db],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        die(f"partner create: {p.stderr.strip()}")
    fields = dict(line.split(": ", 1) for line in p.stdout.splitlines() if ": " in line)
    out = {"partner_id": fields["partner_id"], "api_key": fields["api_key"], "endpoint_ids": []}
    if a.endpoint_url:
        # The store holds no delivery yet: this daemon has nothing to send.
        proc = subprocess.Popen([a.vocohook, "serve", "--listen", "127.0.0.1:0", "--db", db,
                                 "--node-id", "bench-setup", "--allow-http",
                                 "--allow-private-networks", "--rate-limit", "off"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                text=True)
        try:
            port = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                m = LISTENING.match(line.strip())
                if m:
                    port = int(m.group(2))
                    break
            if port is None:
                die("vocohook serve did not start")
            for i, url in enumerate(a.endpoint_url):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("POST", "/api/v2/config/webhooks",
                          body=json.dumps({"label": f"bench-{i + 1}", "url": url}),
                          headers={"Authorization": f"Bearer {out['api_key']}",
                                   "Content-Type": "application/json"})
                r = c.getresponse()
                data = json.loads(r.read())
                c.close()
                if r.status != 201:
                    die(f"creating the endpoint {url}: {r.status} {data}")
                out["endpoint_ids"].append(data["data"]["id"])
        finally:
            proc.terminate()
            if proc.wait(timeout=15) != 0:
                die("vocohook serve did not exit cleanly")
    json.dump(out, sys.stdout)
    print()


# --- drain --------------------------------------------------------------------------------

def ro(db):
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def counts(db):
    """The deliveries by state (a scan: once, at the end)."""
    try:
        con = ro(db)
        try:
            return dict(con.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
        finally:
            con.close()
    except sqlite3.OperationalError as e:
        return {"error": str(e)}


# Whether any delivery is still to be sent: two lookups in the (state, next_attempt_ms)
# index that both vocohook's store and the Node.js sender's outbox have.
UNFINISHED = ("SELECT EXISTS (SELECT 1 FROM deliveries WHERE state = 'pending')"
              " OR EXISTS (SELECT 1 FROM deliveries WHERE state = 'in_flight')")


def cmd_drain(a):
    """Polls the store (read-only) until no delivery is pending or in flight, then checks
    that `count` deliveries succeeded; the figure comes from the store's own timestamps
    (the last delivery's commit), not the poll. The poll is two index lookups: until
    session 23 it counted the deliveries by state, a scan of the table every 0.2 s that
    took 55-100 ms of the load core at 100 000 deliveries, the core nginx (the sink) runs
    on."""
    deadline = time.monotonic() + a.timeout
    while True:
        try:
            con = ro(a.db)
            try:
                (busy,) = con.execute(UNFINISHED).fetchone()
            finally:
                con.close()
        except sqlite3.OperationalError:
            busy = 1  # not created yet, or locked for a moment
        if not busy:
            break
        if time.monotonic() > deadline:
            die(f"timed out after {a.timeout} s: {counts(a.db)}")
        time.sleep(0.2)
    rows = counts(a.db)
    done = rows.get("succeeded", 0)
    if done < a.count:
        die(f"deliveries failed: {rows}")
    con = ro(a.db)
    try:
        (last_ms,) = con.execute(
            "SELECT max(updated_ms) FROM deliveries WHERE state = 'succeeded'").fetchone()
        (first_ms, attempts, non2xx) = con.execute(
            "SELECT min(started_ms), count(*), sum(http_status IS NULL OR http_status / 100 != 2)"
            " FROM attempts").fetchone()
    finally:
        con.close()
    secs = (last_ms - a.t0_ms) / 1000.0
    print(json.dumps({"deliveries": done, "seconds": secs, "rate": done / secs,
                      "first_attempt_after_s": (first_ms - a.t0_ms) / 1000.0,
                      "attempts": attempts, "failed_attempts": non2xx}))


def cmd_count(a):
    con = ro(a.db)
    try:
        (n,) = con.execute("SELECT count(*) FROM events").fetchone()
    finally:
        con.close()
    print(n)


# --- samples --------------------------------------------------------------------------------

def add_sample(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def cmd_sample(a):
    """One figure: a wrk summary (--wrk FILE: requests/s over its duration) or a drain
    sample (--drain FILE: deliveries/s)."""
    rec = {"scenario": a.scenario, "series": a.series, "run": a.run}
    if a.wrk:
        with open(a.wrk) as f:
            w = json.loads(f.read())
        errs = {k: v for k, v in w["errors"].items() if v and k != "timeout"}
        if errs:
            die(f"{a.scenario}/{a.series} run {a.run}: wrk saw errors {w['errors']}")
        if w["errors"]["timeout"]:
            print(f"vhbench: {a.scenario}/{a.series} run {a.run}: {w['errors']['timeout']} "
                  "requests took over 30 s", file=sys.stderr)
        rec["value"] = w["requests"] / (w["duration_us"] / 1e6)
        rec["detail"] = w
    else:
        with open(a.drain) as f:
            d = json.loads(f.read())
        if d["failed_attempts"]:
            die(f"drain run {a.run}: {d['failed_attempts']} attempts failed")
        rec["value"] = d["rate"]
        rec["detail"] = d
    if a.extra:
        rec["detail"].update(json.loads(a.extra))
    add_sample(a.samples, rec)


SIGN_ROW = re.compile(r"^\| (~\d+ KB) \| (\(\w+'?\) [^|]+?) \| (\d+) \| (\d+)-(\d+) \|")


def cmd_sign(a):
    """bench_sign's table -> one sample per (body, operation), ops/s median and min-max."""
    with open(a.file) as f:
        text = f.read()
    n = 0
    for line in text.splitlines():
        m = SIGN_ROW.match(line)
        if m:
            body, op, med, lo, hi = m.groups()
            add_sample(a.samples, {"scenario": "sign", "series": f"{body} {op}", "run": 0,
                                   "value": float(med), "detail": {"min": float(lo),
                                                                    "max": float(hi)}})
            n += 1
    if n != 10:
        die(f"bench_sign output: expected 10 rows, found {n}")


# --- report --------------------------------------------------------------------------------
#
# Scenario specs. Every bench/scenarios/NAME.json says how the report shows scenario NAME:
#
#   {"order": 10,                      sort key of the scenarios (bench/run runs them so too)
#    "title": "1. Drain a backlog",
#    "unit": "deliveries/s",           unit of every row unless a row says otherwise
#    "kind": "table" | "sign",         "sign": bench_sign's own table (scenario 9)
#    "plot": "FILE.png",               optional: an image the scenario wrote into the results
#    "rows": [{"series": "vocohook",   the samples' series (or "NAME/series": another scenario's)
#              "label": "…",           what the row measures
#              "unit": "ms",           optional
#              "baseline": "wrk",      optional: a series of this scenario, or "NAME/series"
#              "target": {"ratio_min": 0.4} | {"ratio_max": 1.2} | {"max": 10} | {"min": 1},
#              "optional": true}]}     optional: the smoke check does not require it
#
# A sample is one line of the samples file: {"scenario", "series", "run", "value", "detail"}.

def load_specs(d):
    specs = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".json"):
            with open(os.path.join(d, f)) as fh:
                specs[f[:-5]] = json.load(fh)
    return dict(sorted(specs.items(), key=lambda kv: kv[1]["order"]))


SIGN_RATIOS = [
    ("~2 KB", "(b) render + sign", "(d') OpenSSL EVP_MAC, reused ctx"),
    ("~2 KB", "(c) sign", "(d') OpenSSL EVP_MAC, reused ctx"),
    ("~2 KB", "(b) render + sign", "(d) OpenSSL HMAC() one-shot"),
    ("~50 KB", "(b) render + sign", "(d') OpenSSL EVP_MAC, reused ctx"),
    ("~50 KB", "(c) sign", "(d') OpenSSL EVP_MAC, reused ctx"),
    ("~50 KB", "(b) render + sign", "(d) OpenSSL HMAC() one-shot"),
]


def summarize(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values), "values": values}


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:,.1f}"
    return f"{x:.3g}"


def target_text(t):
    if "ratio_min" in t:
        return f"≥ {t['ratio_min']}×"
    if "ratio_max" in t:
        return f"≤ {t['ratio_max']}×"
    if "max" in t:
        return f"< {t['max']}"
    return f"≥ {t['min']}"


def target_met(t, value, ratio):
    if "ratio_min" in t:
        return ratio is not None and ratio >= t["ratio_min"]
    if "ratio_max" in t:
        return ratio is not None and ratio <= t["ratio_max"]
    if "max" in t:
        return value < t["max"]
    return value >= t["min"]


def report_sign(samples, md):
    sign = {s["series"]: s for s in samples if s["scenario"] == "sign"}
    if not sign:
        return {"status": "not run"}
    entry = {"status": "ok", "unit": "ops/s",
             "ops": {k: {"median": v["value"], **v["detail"]} for k, v in sign.items()},
             "ratios": {}}
    md += ["| body | operation | ops/s (median) | min–max |", "|---|---|---:|---:|"]
    for k, v in sign.items():
        body, op = k.split(" ", 2)[0] + " KB", k.split(" ", 2)[2]
        md.append(f"| {body} | {op} | {fmt(v['value'])} | "
                  f"{fmt(v['detail']['min'])}–{fmt(v['detail']['max'])} |")
    md += ["", "Speed relative to the limit (ops/s over the baseline's ops/s; 1.00× is "
           "the raw HMAC):", "", "| body | operation | baseline | ratio |", "|---|---|---|---:|"]
    for body, op, b in SIGN_RATIOS:
        x, y = sign.get(f"{body} {op}"), sign.get(f"{body} {b}")
        if x and y:
            r = x["value"] / y["value"]
            entry["ratios"][f"{body}: {op} / {b}"] = r
            md.append(f"| {body} | {op} | {b} | **{r:.2f}×** |")
    md.append("")
    return entry


def cmd_report(a):
    samples = []
    if os.path.exists(a.samples):
        with open(a.samples) as f:
            samples = [json.loads(line) for line in f if line.strip()]
    with open(a.meta) as f:
        meta = json.load(f)
    specs = load_specs(a.specs)
    res = {"meta": meta, "scenarios": {}}
    md = [f"# vocohook benchmarks — {meta['date']}", "",
          f"`{meta['command']}` on {meta['machine']}; vocohook {meta['version']} "
          f"(commit {meta['commit']}). System under test pinned to core {meta['sut_core']}, "
          f"load generator and receiver to core {meta['load_core']}. Each figure is the median "
          f"of {meta['runs']} runs, with the min–max; ratios divide medians measured in this "
          "same run. See docs/BENCHMARKS.md for what each scenario does.", ""]

    def series_values(scenario, series):
        return [s["value"] for s in samples
                if s["scenario"] == scenario and s["series"] == series]

    for key, sc in specs.items():
        if not any(s["scenario"] == key for s in samples):
            res["scenarios"][key] = {"status": "not run"}
            continue
        md += [f"## {sc['title']}", ""]
        if sc.get("kind") == "sign":
            res["scenarios"][key] = report_sign(samples, md)
            continue
        entry = {"status": "ok", "unit": sc.get("unit", ""), "series": {}, "ratios": {},
                 "targets": {}, "params": meta["params"].get(key, {}),
                 "details": [s for s in samples if s["scenario"] == key]}
        md += ["| figure | median | min–max | vs baseline | target |",
               "|---|---:|---:|---:|---|"]
        for row in sc["rows"]:
            skey, _, sser = row["series"].rpartition("/")
            vals = series_values(skey or key, sser)
            unit = row.get("unit", sc.get("unit", ""))
            if not vals:
                md.append(f"| {row['label']} | not measured | | | |")
                continue
            ss = summarize(vals)
            entry["series"][row["series"]] = dict(ss, unit=unit)
            ratio, ratio_txt = None, "1.00×" if row.get("is_baseline") else ""
            if row.get("baseline"):
                bkey, _, bser = row["baseline"].rpartition("/")
                bvals = series_values(bkey or key, bser)
                if bvals:
                    ratio = ss["median"] / statistics.median(bvals)
                    entry["ratios"][row["series"]] = ratio
                    ratio_txt = f"**{ratio:.2f}×** {row['baseline']}"
            tgt = ""
            if row.get("target"):
                met = target_met(row["target"], ss["median"], ratio)
                entry["targets"][row["series"]] = {"target": row["target"], "met": met}
                tgt = f"{target_text(row['target'])}: {'met' if met else '**missed**'}"
            md.append(f"| {row['label']} | {fmt(ss['median'])} {unit} | "
                      f"{fmt(ss['min'])}–{fmt(ss['max'])} | {ratio_txt} | {tgt} |")
        md.append("")
        lat = {}
        for row in sc["rows"]:
            ls = [s["detail"]["latency_us"] for s in samples if s["scenario"] == key
                  and s["series"] == row["series"] and "latency_us" in s.get("detail", {})]
            if ls:
                lat[row["series"]] = {q: statistics.median(x[q] for x in ls) / 1000.0
                                      for q in ("p50", "p99", "max")}
        if lat:
            entry["latency_ms"] = lat
            md += ["Latency as wrk saw it (median of the runs): " + "; ".join(
                f"{series} p50 {v['p50']:.1f} ms, p99 {v['p99']:.1f} ms, max {v['max']:.0f} ms"
                for series, v in lat.items()) + ".", ""]
        if entry["params"]:
            md += ["Parameters: " + ", ".join(f"{k} = {v}" for k, v in entry["params"].items())
                   + ".", ""]
        if sc.get("plot") and a.plot_dir and os.path.exists(os.path.join(a.plot_dir, sc["plot"])):
            entry["plot"] = sc["plot"]
            md += [f"![{sc['title']}]({sc['plot']})", ""]
        res["scenarios"][key] = entry
    with open(a.out_json, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    with open(a.out_md, "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


def cmd_meta(a):
    """The run's description, for the report's header."""
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": a.command,
        "machine": f"{os.cpu_count()} CPUs ({model or platform.machine()}), "
                   f"{platform.system()} {platform.release()}",
        "version": sh(a.vocohook, "--version").replace("vocohook ", ""),
        "commit": sh("git", "-C", a.src, "rev-parse", "--short", "HEAD") or "unknown",
        "sut_core": a.sut_core, "load_core": a.load_core, "runs": a.runs,
        "params": json.loads(a.params),
    }
    with open(a.out, "w") as f:
        json.dump(meta, f, indent=2)


def cmd_check(a):
    """Smoke mode: every scenario asked for ran and has every series its spec names (a
    positive median), and the meta block is complete. Never a speed."""
    with open(a.file) as f:
        res = json.load(f)
    for key in ("date", "machine", "commit", "runs", "params"):
        if key not in res.get("meta", {}):
            die(f"{a.file}: meta.{key} is missing")
    specs = load_specs(a.specs)
    for sc in a.only.split(","):
        entry = res.get("scenarios", {}).get(sc)
        if not entry or entry.get("status") != "ok":
            die(f"{a.file}: scenario {sc} did not run")
        if specs[sc].get("kind") == "sign":
            if len(entry["ratios"]) != len(SIGN_RATIOS):
                die(f"{a.file}: scenarios.{sc}.ratios is incomplete")
            continue
        for row in specs[sc]["rows"]:
            skey = row["series"].rpartition("/")[0]
            if row.get("optional") or (skey and skey not in a.only.split(",")):
                continue
            got = entry["series"].get(row["series"])
            if not got:
                die(f"{a.file}: scenarios.{sc}: series {row['series']} is missing")
            if not got["median"] > 0:
                die(f"{a.file}: scenarios.{sc}.{row['series']}.median is not positive")
            if row.get("baseline") and row["series"] not in entry["ratios"]:
                bkey = row["baseline"].rpartition("/")[0]
                if not bkey or bkey in a.only.split(","):
                    die(f"{a.file}: scenarios.{sc}: no ratio for {row['series']}")
    print(f"vhbench: {a.file} has every expected series")


def cmd_value(a):
    """One figure given directly (a latency, an RSS, a CPU time...)."""
    rec = {"scenario": a.scenario, "series": a.series, "run": a.run, "value": a.value,
           "detail": json.loads(a.detail) if a.detail else {}}
    add_sample(a.samples, rec)


def main():
    ap = argparse.ArgumentParser(prog="vhbench")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("setup")
    p.add_argument("--vocohook", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--endpoint-url", action="append")
    p.set_defaults(fn=cmd_setup)
    p = sub.add_parser("drain")
    p.add_argument("--db", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--t0-ms", type=int, required=True)
    p.add_argument("--timeout", type=float, default=600)
    p.set_defaults(fn=cmd_drain)
    p = sub.add_parser("count")
    p.add_argument("--db", required=True)
    p.set_defaults(fn=cmd_count)
    p = sub.add_parser("sample")
    p.add_argument("--samples", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--series", required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--wrk")
    p.add_argument("--drain")
    p.add_argument("--extra")
    p.set_defaults(fn=cmd_sample)
    p = sub.add_parser("value")
    p.add_argument("--samples", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--series", required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--value", type=float, required=True)
    p.add_argument("--detail")
    p.set_defaults(fn=cmd_value)
    p = sub.add_parser("sign")
    p.add_argument("--samples", required=True)
    p.add_argument("file")
    p.set_defaults(fn=cmd_sign)
    p = sub.add_parser("meta")
    p.add_argument("--out", required=True)
    p.add_argument("--vocohook", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--sut-core", type=int, required=True)
    p.add_argument("--load-core", type=int, required=True)
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--params", default="{}")
    p.set_defaults(fn=cmd_meta)
    p = sub.add_parser("report")
    p.add_argument("--samples", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-json", required=True)
    p.add_argument("--specs", required=True)
    p.add_argument("--plot-dir")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("check")
    p.add_argument("--specs", required=True)
    p.add_argument("--only", required=True)
    p.add_argument("file")
    p.set_defaults(fn=cmd_check)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
