"""Several `vocohook serve` nodes on one PostgreSQL database: every node ingests and delivers,
an API key's rate limit is one budget across the nodes, an endpoint disabled through one
node gets none of the attempts queued on either node, a delivery is never sent by two
nodes at once, a node killed with SIGKILL loses nothing
(its restart under the same node id takes back what it held), and a database restart loses
nothing that was acknowledged, refuses ingest while the database is down, and delivery
resumes within seconds of its return.

Needs VH_TEST_PG_URL (`make test` runs ctest under scripts/with-postgres); the module is
skipped without it. Each test gets a fresh database from scripts/pg-fresh-db; the database
restart test runs its own throw-away server (scripts/pg-test-server), since it restarts it.
The database is only read here (psql, default_transaction_read_only); everything written
goes through the daemons, but for one test's login role (pg_admin).
"""
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from receivers import Receiver  # noqa: E402
from server import SOURCE_DIR, Daemon, create_partner, run_cli, seed_session  # noqa: E402

PG_URL = os.environ.get("VH_TEST_PG_URL")
SCRIPTS = os.path.join(SOURCE_DIR, "scripts")
ENDPOINTS = 3
SLOTS = 8  # the engine's attempts at once per endpoint (VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT)
RECEIVER_DELAY = 0.003  # seconds each receiver takes before it answers 204
NODE_ARGS = ["--allow-http", "--allow-private-networks", "--log-level", "debug"]


def pg_bin(name):
    """A PostgreSQL client or server program, as scripts/pg-test-server finds them."""
    for v in (15, 16, 17, 14, 13):
        path = f"/usr/lib/postgresql/{v}/bin/{name}"
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name) or name


def as_cluster_owner(argv):
    """Runs server programs as the cluster's owner: `postgres` when we are root (initdb and
    pg_ctl refuse root), as scripts/pg-test-server does."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else argv


def psql(url, sql, timeout=10):
    """Rows of a read-only query, each a list of text fields."""
    env = dict(os.environ, PGOPTIONS="-c default_transaction_read_only=on")
    p = subprocess.run([pg_bin("psql"), "-X", "-q", "-A", "-t", "-F", "|", "-v",
                        "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                       capture_output=True, env=env, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"psql {sql!r}: {p.stderr.decode(errors='replace')}")
    return [line.split("|") for line in p.stdout.decode().splitlines() if line]


def pg_admin(url, sql, timeout=10):
    """Runs `sql` as the URL's user (the test server's superuser): roles and their limits."""
    p = subprocess.run([pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                        "-c", sql], capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"psql {sql!r}: {p.stderr.decode(errors='replace')}")


def delivery_states(url):
    """{state: count} of every delivery, or None while the database cannot be read."""
    try:
        return {s: int(n) for s, n in psql(url, "SELECT state, count(*) FROM deliveries "
                                                "GROUP BY state")}
    except (AssertionError, subprocess.TimeoutExpired):
        return None


def wait_until(predicate, timeout, interval=0.1):
    """Polls `predicate` (another process's database: there is no event to wait on) until it
    returns something true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class TimedReceiver:
    """A webhook receiver on 127.0.0.1 that records, per request, when it arrived and when
    the answer was written (monotonic), the X-Webhook-Id and the body; it answers 204 after
    `delay` seconds."""

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 128
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # a sender killed mid-request resets its connection: expected here

    def __init__(self, delay=RECEIVER_DELAY):
        self.records = []  # (arrival, finish, x-webhook-id, body)
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                arrival = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(delay)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()
                with outer.cond:
                    outer.records.append((arrival, time.monotonic(),
                                          self.headers.get("X-Webhook-Id"), body))
                    outer.cond.notify_all()

            def log_message(self, *args):
                pass

        self.httpd = self.Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.cond:
            return len(self.records)

    def snapshot(self):
        with self.cond:
            return list(self.records)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def session_ids(records):
    return {json.loads(body)["data"]["session_id"] for _, _, _, body in records}


def overlaps(records, exempt=()):
    """Requests for one session at one endpoint whose (arrival, finish) intervals overlap:
    the same delivery being sent twice at the same time. A request in progress at one of the
    `exempt` instants (a sender killed mid-request) is left out: its sender is gone, so the
    resend is not concurrent with a live one."""
    by_session = {}
    for arrival, finish, _, body in records:
        if any(arrival <= t <= finish for t in exempt):
            continue
        by_session.setdefault(json.loads(body)["data"]["session_id"], []).append(
            (arrival, finish))
    bad = []
    for sid, spans in by_session.items():
        spans.sort()
        for (a0, f0), (a1, f1) in zip(spans, spans[1:]):
            if a1 < f0:
                bad.append((sid, (a0, f0), (a1, f1)))
    return bad


def duplicates(records):
    seen, dup = set(), 0
    for _, _, _, body in records:
        sid = json.loads(body)["data"]["session_id"]
        dup += sid in seen
        seen.add(sid)
    return dup


def ok_attempts(lines):
    """How many successful attempts a node's debug log shows (the engine logs one record per
    attempt; the node is the process, so each daemon's stderr is its own count)."""
    n = 0
    for line in lines:
        if '"msg":"attempt"' in line:
            rec = json.loads(line)
            n += rec.get("result") == "ok"
    return n


class Ingester:
    """Concurrent ingest clients. Session i goes first to node i % len(nodes); a failure
    (refused, reset, non-2xx) is retried on the next node until `deadline`. Ingest is
    idempotent on session_id, so a retry after a lost answer is harmless. Records which
    sessions were acknowledged (2xx) and every status seen."""

    def __init__(self, nodes, partner_id, prefix, count, clients=8, timeout=60, rate=None):
        self.nodes = nodes
        self.partner_id = partner_id
        self.sids = [f"{prefix}-{i}" for i in range(count)]
        self.next = 0
        self.lock = threading.Lock()
        self.acked = set()
        self.statuses = {}
        self.gave_up = []
        self.rate = rate  # sessions per second over all clients; None: as fast as they go
        self.deadline = time.monotonic() + timeout
        self.threads = [threading.Thread(target=self._client, daemon=True)
                        for _ in range(clients)]

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0, end - time.monotonic()))
        self.elapsed = time.monotonic() - self.t0
        return not any(t.is_alive() for t in self.threads)

    def body(self, sid):
        s = seed_session()
        s["session_id"] = sid
        s["call"]["call_id"] = "c-" + sid
        return json.dumps({"partner_id": self.partner_id, "session": s}).encode()

    def _post(self, conns, k, body):
        d = self.nodes[k]
        key = (k, d.port)
        try:
            c = conns.get(key)
            if c is None:
                c = conns[key] = http.client.HTTPConnection(d.host, d.port, timeout=10)
            c.request("POST", "/internal/v1/sessions", body=body,
                      headers={"Authorization": f"Bearer {d.token}",
                               "Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            c = conns.pop(key, None)
            if c is not None:
                c.close()
            return None

    def _client(self):
        conns = {}
        while True:
            with self.lock:
                if self.next >= len(self.sids):
                    break
                i = self.next
                self.next += 1
            if self.rate:
                time.sleep(max(0, self.t0 + i / self.rate - time.monotonic()))
            sid = self.sids[i]
            body = self.body(sid)
            k = i % len(self.nodes)
            while True:
                status = self._post(conns, k, body)
                with self.lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if status is not None and 200 <= status < 300:
                        self.acked.add(sid)
                        break
                if time.monotonic() >= self.deadline:
                    with self.lock:
                        self.gave_up.append(sid)
                    break
                k = (k + 1) % len(self.nodes)
                time.sleep(0.02)
        for c in conns.values():
            c.close()


class Nodes(unittest.TestCase):
    """What both test classes use: nodes on a fresh database, receivers, and checks. It has
    no tests of its own, so a subclass runs only its own."""

    def setUp(self):
        self.nodes = []
        self.receivers = []
        self.url = self.fresh_db(PG_URL)

    def tearDown(self):
        for d in self.nodes:
            d.cleanup()
        for r in self.receivers:
            r.close()

    def fresh_db(self, server_url):
        p = subprocess.run([os.path.join(SCRIPTS, "pg-fresh-db"), server_url],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        url = p.stdout.decode().strip()
        self.addCleanup(subprocess.run, [os.path.join(SCRIPTS, "pg-fresh-db"), "--drop", url],
                        capture_output=True, timeout=30)
        return url

    def node(self, node_id, token, url=None):
        """A daemon on the test database (`url`: the same database another way) under
        `node_id` (through VOCOHOOK_NODE_ID, as a container would set it), sharing one ingest
        token with its peers."""
        d = Daemon(args=NODE_ARGS, db=url or self.url, ingest_token=token,
                   env={"VOCOHOOK_NODE_ID": node_id})
        self.nodes.append(d)
        return d

    def start_nodes(self, ids):
        """Starts the nodes at the same time on the empty database: their migrations meet
        on the advisory lock, and one of them migrates."""
        token = "itok_" + os.urandom(24).hex()
        nodes = [self.node(i, token) for i in ids]
        errors = []

        def start(d):
            try:
                d.start()
            except AssertionError as e:
                errors.append(e)

        threads = [threading.Thread(target=start, args=(d,)) for d in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        return nodes

    def setup_partner(self, via, delay=RECEIVER_DELAY):
        """A partner with ENDPOINTS endpoints, each to its own receiver."""
        pid, key = create_partner(self.url)
        for i in range(ENDPOINTS):
            r = TimedReceiver(delay)
            self.receivers.append(r)
            resp = via.request("POST", "/api/v2/config/webhooks", key=key,
                               body={"label": f"ep{i}", "url": r.url})
            self.assertEqual(resp.status, 201, resp)
        return pid

    def wait_all_succeeded(self, url, total, timeout):
        states = wait_until(lambda: (lambda s: s if s == {"succeeded": total} else None)(
            delivery_states(url)), timeout, 0.2)
        return states or delivery_states(url)

    def stuck(self, url):
        """What is left unfinished, and what the nodes logged as errors, for a message."""
        rows = psql(url, "SELECT state, lease_owner, attempts, count(*) FROM deliveries "
                         "WHERE state <> 'succeeded' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
        errors = {}
        for d in self.nodes:
            for line in d.err.text().splitlines():
                if '"level":"error"' not in line:
                    continue
                rec = json.loads(line)
                if rec.get("msg") == "request":
                    continue  # the access log line of a 5xx: its cause has a line of its own
                what = (rec.get("msg", "") + ": " + rec.get("detail", "")).split(" '")[0][:90]
                errors[what] = errors.get(what, 0) + 1
        return (f"\nunfinished (state, lease owner, attempts, count): {rows}"
                f"\nerror records in the nodes' current logs: {errors}")

    def login_role(self, node):
        """A login role of its own for node `node` (a member of the test user's role, so it
        reaches the same schema), and the database URL that logs in as it, with
        application_name vh-NODE; dropped after the test. Returns (role, url)."""
        u = urllib.parse.urlsplit(self.url)
        role = f"vh_node_{node}_" + os.urandom(4).hex()
        pg_admin(self.url, f"CREATE ROLE {role} LOGIN IN ROLE {u.username}")
        # After tearDown has stopped the nodes; before the database is dropped.
        self.addCleanup(pg_admin, self.url, f"DROP ROLE IF EXISTS {role}")
        return role, urllib.parse.urlunsplit(
            (u.scheme, f"{role}@{u.hostname}:{u.port}", u.path, f"application_name=vh-{node}", ""))

    def release_then_all_canceled(self, release, held, n, on_wire):
        """Lets the `on_wire` attempts the receiver `held` holds end, then checks that all
        `n` deliveries end canceled (their endpoint was disabled) and that no attempt but
        those reached it."""
        release.set()
        states = wait_until(lambda: (lambda s: s if s == {"canceled": n} else None)(
            delivery_states(self.url)), 15, 0.1)
        self.assertEqual(states, {"canceled": n}, self.stuck(self.url))
        self.assertEqual(held.wait_count(on_wire + 1, 1), on_wire,
                         "queued attempts reached the disabled endpoint")

    def check_receivers(self, sids, exempt=()):
        """Every session reached every endpoint, and no delivery was in progress twice at
        once. Returns the number of duplicate requests (sequential resends)."""
        dup = 0
        for n, r in enumerate(self.receivers):
            records = r.snapshot()
            missing = set(sids) - session_ids(records)
            self.assertEqual(missing, set(), f"endpoint {n}: sessions never delivered")
            bad = overlaps(records, exempt)
            self.assertEqual(bad, [], f"endpoint {n}: a delivery was sent twice at once")
            dup += duplicates(records)
        return dup


@unittest.skipUnless(PG_URL, "VH_TEST_PG_URL is not set (run under scripts/with-postgres)")
class MultiNode(Nodes):
    # -- two nodes, one database --------------------------------------------------------------

    def test_two_nodes_share_the_work_and_never_send_one_delivery_twice_at_once(self):
        n = 2000
        a, b = self.start_nodes(["a", "b"])
        pid = self.setup_partner(a)
        rows = psql(self.url, "SELECT version FROM vocohook_schema")
        self.assertEqual(len(rows), 1, "the schema table holds one row: migrated once")

        ing = Ingester([a, b], pid, "mn", n).start()
        self.assertTrue(ing.join(90), f"ingest clients still running: {len(ing.acked)} "
                        f"acknowledged, statuses {ing.statuses}")
        self.assertEqual(ing.gave_up, [], f"statuses {ing.statuses}")
        self.assertEqual(len(ing.acked), n)
        states = self.wait_all_succeeded(self.url, ENDPOINTS * n, 30)
        self.assertEqual(states, {"succeeded": ENDPOINTS * n}, self.stuck(self.url))
        done = time.monotonic()

        dup = self.check_receivers(ing.acked)
        # Nothing failed and no node stopped: each delivery was made exactly once.
        self.assertEqual(dup, 0, "duplicate requests without any failure")
        attempts = int(psql(self.url, "SELECT count(*) FROM attempts")[0][0])
        self.assertEqual(attempts, ENDPOINTS * n)

        # Which node made how many: each daemon's debug log records its own attempts.
        per_node = {"a": ok_attempts(a.err.text().splitlines()),
                    "b": ok_attempts(b.err.text().splitlines())}
        self.assertEqual(sum(per_node.values()), ENDPOINTS * n, per_node)
        self.assertGreater(per_node["a"], 0, f"node a made no delivery: {per_node}")
        self.assertGreater(per_node["b"], 0, f"node b made no delivery: {per_node}")
        first = min(rec[0] for r in self.receivers for rec in r.snapshot())
        last = max(rec[1] for r in self.receivers for rec in r.snapshot())
        print(f"\ntwo nodes: {n} sessions ingested in {ing.elapsed:.1f} s "
              f"({n / ing.elapsed:.0f}/s); {ENDPOINTS * n} deliveries from first arrival to "
              f"last answer in {last - first:.1f} s ({ENDPOINTS * n / (last - first):.0f}/s), "
              f"all succeeded {done - ing.t0:.1f} s after the first ingest; "
              f"per node {per_node}", file=sys.stderr)

    # -- an endpoint changed through one node -------------------------------------------------

    def test_an_endpoint_disabled_through_one_node_takes_back_both_nodes_queues(self):
        """A slow endpoint holds SLOTS attempts on each node while the rest of its
        deliveries wait in the two engines' queues. Disabled through node a, it gets none
        of them: node b hears of the change from the database (LISTEN/NOTIFY) and drops its
        own queue too, not only node a."""
        n = 60
        release = threading.Event()
        self.addCleanup(release.set)
        held = Receiver(lambda _: 204 if release.wait(30) else 500)
        self.addCleanup(held.close)
        a, b = self.start_nodes(["a", "b"])
        pid, key = create_partner(self.url)
        r = a.request("POST", "/api/v2/config/webhooks", key=key,
                      body={"label": "slow", "url": held.url})
        self.assertEqual(r.status, 201, r)
        ep_id = json.loads(r.body)["data"]["id"]

        ing = Ingester([a, b], pid, "held", n, clients=2).start()
        self.assertTrue(ing.join(30), "ingest clients still running")
        self.assertEqual(len(ing.acked), n, f"statuses {ing.statuses}")
        # Each node's engine holds its SLOTS at once; 2 * SLOTS means both have claimed.
        self.assertEqual(held.wait_count(2 * SLOTS, 15), 2 * SLOTS)
        self.assertEqual(held.wait_count(2 * SLOTS + 1, 0.5), 2 * SLOTS)

        # What node b holds beyond its SLOTS on the wire waits in its engine's queue.
        queued_b = int(psql(self.url, "SELECT count(*) FROM deliveries WHERE"
                                      " state = 'in_flight' AND lease_owner = 'b'")[0][0]) - SLOTS
        r = a.request("PATCH", f"/api/v2/config/webhooks/{ep_id}", key=key,
                      body={"enabled": False})
        self.assertEqual(r.status, 200, r)
        # Node b drops its queue when its watcher hears the commit: await its report of the
        # jobs it took back before the held attempts end and free the slots.
        if queued_b > 0:
            dropped = b.wait_log(lambda rec: rec.get("msg") == "attempt" and
                                 "endpoint changed" in rec.get("error", ""), 15)
            self.assertIsNotNone(dropped, "node b never took back its queued attempts")
        self.release_then_all_canceled(release, held, n, 2 * SLOTS)

    def test_an_endpoint_change_missed_while_a_watcher_reconnects_still_takes_back_its_queue(self):
        """Node b's listening connection is cut and cannot come back (its login role is held
        at CONNECTION LIMIT 0; its pooled connections live on) while the endpoint is disabled
        through node a: the notification is sent to no one on b. When b's watcher connects
        again it cannot know what it missed, so b takes back every attempt it has queued,
        and none of them reaches the disabled endpoint."""
        n = 40
        release = threading.Event()
        self.addCleanup(release.set)
        held = Receiver(lambda _: 204 if release.wait(30) else 500)
        self.addCleanup(held.close)
        role, b_url = self.login_role("b")
        token = "itok_" + os.urandom(24).hex()

        # Node b alone holds the whole backlog: SLOTS on the wire, the rest in its queue.
        # The schema is made as the server's user first (the role would own it otherwise).
        pid, key = create_partner(self.url)
        b = self.node("b", token, url=b_url)
        b.start()
        r = b.request("POST", "/api/v2/config/webhooks", key=key,
                      body={"label": "slow", "url": held.url})
        self.assertEqual(r.status, 201, r)
        ep_id = json.loads(r.body)["data"]["id"]
        ing = Ingester([b], pid, "held", n, clients=2).start()
        self.assertTrue(ing.join(30), "ingest clients still running")
        self.assertEqual(len(ing.acked), n, f"statuses {ing.statuses}")
        self.assertEqual(held.wait_count(SLOTS, 15), SLOTS)
        in_flight = "SELECT count(*) FROM deliveries WHERE state = 'in_flight'" \
                    " AND lease_owner = 'b'"
        self.assertEqual(wait_until(lambda: int(psql(self.url, in_flight)[0][0]) == n, 15),
                         True, "node b never claimed the whole backlog")
        a = self.node("a", token)
        a.start()

        # b's watcher is cut off; its changes feed stays down until the role may log in.
        pg_admin(self.url, f"ALTER ROLE {role} CONNECTION LIMIT 0")
        listening = ("SELECT pid FROM pg_stat_activity WHERE application_name = 'vh-b'"
                     " AND query LIKE 'LISTEN%'")
        self.assertEqual(len(psql(self.url, listening)), 1, "node b's watcher is not listening")
        pg_admin(self.url, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                           " WHERE application_name = 'vh-b' AND query LIKE 'LISTEN%'")
        self.assertEqual(psql(self.url, listening), [])
        r = a.request("PATCH", f"/api/v2/config/webhooks/{ep_id}", key=key,
                      body={"enabled": False})
        self.assertEqual(r.status, 200, r)
        pg_admin(self.url, f"ALTER ROLE {role} CONNECTION LIMIT -1")

        # Back, b's watcher says any endpoint may have changed: b drops its whole queue.
        dropped = b.wait_log(lambda rec: rec.get("msg") == "attempt" and
                             "may have changed" in rec.get("error", ""), 15)
        self.assertIsNotNone(dropped, "node b never took back its queued attempts")
        self.release_then_all_canceled(release, held, n, SLOTS)

    def test_a_node_whose_watcher_cannot_connect_claims_after_its_wait(self):
        """The dispatcher's first claim waits for the endpoint watcher's first connect, for
        at most 2 s (sender.c, await_watcher). A node whose login role can hold only the one
        pooled connection it opens first (CONNECTION LIMIT 1) never gets its watcher in: it
        says so, then delivers all the same; once the role may log in again, the watcher
        connects and the node keeps delivering."""
        role, w_url = self.login_role("w")
        token = "itok_" + os.urandom(24).hex()
        r = Receiver()
        self.addCleanup(r.close)

        # The endpoint through a node that then stops; the backlog through the CLI.
        pid, key = create_partner(self.url)
        a = self.node("a", token)
        a.start()
        resp = a.request("POST", "/api/v2/config/webhooks", key=key,
                         body={"label": "w", "url": r.url})
        self.assertEqual(resp.status, 201, resp)
        a.cleanup()
        session = seed_session()
        tmp = tempfile.mkdtemp(prefix="vh-emit-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "session.json")
        for i in range(3):
            with open(path, "w") as f:
                json.dump(dict(session, session_id=f"watch-{i}-{os.urandom(4).hex()}"), f)
            rc, out, err = run_cli("emit", path, "--partner", pid, "--db", self.url)
            self.assertEqual(rc, 0, err)
        self.assertEqual(delivery_states(self.url), {"pending": 3})

        pg_admin(self.url, f"ALTER ROLE {role} CONNECTION LIMIT 1")
        w = self.node("w", token, url=w_url)
        w.start()
        warned = w.wait_log(lambda rec: rec.get("msg") ==
                            "the store's watcher is not listening yet; claiming without it", 15)
        self.assertIsNotNone(warned, "the dispatcher never stopped waiting for its watcher")
        self.assertEqual(self.wait_all_succeeded(self.url, 3, 15), {"succeeded": 3},
                         self.stuck(self.url))
        self.assertEqual(r.wait_count(3, 5), 3)
        listening = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vh-w'"
                     " AND query LIKE 'LISTEN%'")
        self.assertEqual(int(psql(self.url, listening)[0][0]), 0)

        pg_admin(self.url, f"ALTER ROLE {role} CONNECTION LIMIT -1")
        self.assertTrue(wait_until(lambda: int(psql(self.url, listening)[0][0]) > 0, 15),
                        "the watcher never connected")
        with open(path, "w") as f:
            json.dump(dict(session, session_id=f"watch-3-{os.urandom(4).hex()}"), f)
        rc, out, err = run_cli("emit", path, "--partner", pid, "--db", self.url)
        self.assertEqual(rc, 0, err)
        self.assertEqual(r.wait_count(4, 15), 4)
        self.assertEqual(self.wait_all_succeeded(self.url, 4, 15), {"succeeded": 4})

    # -- rate limits --------------------------------------------------------------------------

    def test_an_api_keys_rate_limit_holds_across_nodes(self):
        """The per-key limit is one budget in the database, not one per node: with a limit
        of 20 per minute, 30 requests spread over two nodes get 20 answers and 10 429s
        (each node alone would have let 15 through, 30 in all)."""
        token = "itok_" + os.urandom(24).hex()
        nodes = []
        for node_id in ("a", "b"):
            d = Daemon(args=NODE_ARGS + ["--rate-limit", "20"], db=self.url,
                       ingest_token=token, env={"VOCOHOOK_NODE_ID": node_id})
            self.nodes.append(d)
            d.start()
            nodes.append(d)
        _, key = create_partner(self.url)
        _, other = create_partner(self.url)
        statuses = {200: 0, 429: 0}
        waits = []
        for i in range(30):
            r = nodes[i % 2].request("GET", "/api/v2/config/webhooks", key=key)
            self.assertIn(r.status, statuses, r)
            statuses[r.status] += 1
            if r.status == 429:
                waits.append(int(r.headers["retry-after"]))
        self.assertEqual(statuses, {200: 20, 429: 10})
        self.assertTrue(all(1 <= w <= 60 for w in waits), waits)
        # Another key has a budget of its own, on either node.
        self.assertEqual(nodes[1].request("GET", "/api/v2/config/webhooks", key=other).status,
                         200)
        rows = psql(self.url, "SELECT general_count FROM rate_windows ORDER BY 1")
        self.assertEqual(rows, [["1"], ["20"]])

    # -- a node killed under load ---------------------------------------------------------------

    def test_a_node_killed_again_and_again_loses_nothing(self):
        n = 1000
        a, b = self.start_nodes(["a", "b"])
        pid = self.setup_partner(a, delay=0.005)
        # Paced over about 8 s, so that the kills land in the middle of ingest and delivery.
        ing = Ingester([a, b], pid, "kill", n, clients=6, rate=125).start()
        kills = []
        ok_b = 0
        for _ in range(5):  # bounded: at most 5 kills, about 1.5 s apart, while ingest runs
            time.sleep(1.5)
            if not any(t.is_alive() for t in ing.threads):
                break
            ok_b += ok_attempts(b.err.text().splitlines())
            b.kill()  # SIGKILL
            kills.append(time.monotonic())
            b.start()  # the same node id: it takes back its in-flight rows at once
        self.assertTrue(ing.join(60), "ingest clients still running")
        self.assertEqual(ing.gave_up, [], f"statuses {ing.statuses}")
        self.assertEqual(len(ing.acked), n)
        self.assertGreaterEqual(len(kills), 2, "the load ended before two kills: not a test")

        states = self.wait_all_succeeded(self.url, ENDPOINTS * n, 30)
        self.assertEqual(states, {"succeeded": ENDPOINTS * n},
                         "lost or stuck deliveries after the kills" + self.stuck(self.url))
        stored = {r[0] for r in psql(self.url, "SELECT session_id FROM events")}
        self.assertEqual(stored, ing.acked)
        dup = self.check_receivers(ing.acked, exempt=kills)
        ok_b += ok_attempts(b.err.text().splitlines())
        resumed = sum(1 for line in b.err.text().splitlines()
                      if "resumed deliveries left in flight" in line)
        print(f"\nkills of node b: {len(kills)}; duplicates (resent after a kill): {dup}; "
              f"node a made {ok_attempts(a.err.text().splitlines())} deliveries, "
              f"node b {ok_b}; statuses seen by ingest clients {ing.statuses}; "
              f"last restart resumed held rows: {bool(resumed)}", file=sys.stderr)


@unittest.skipUnless(PG_URL, "VH_TEST_PG_URL is not set (run under scripts/with-postgres)")
class DatabaseRestart(Nodes):
    """The database restarts under two nodes. It runs on a server of its own, since it is
    restarted (scripts/with-postgres does not export its data directory)."""

    def setUp(self):
        self.nodes = []
        self.receivers = []
        self.pg_dir = tempfile.mkdtemp(prefix="vh-pg-mn-")
        os.chmod(self.pg_dir, 0o755)
        p = subprocess.run([os.path.join(SCRIPTS, "pg-test-server"), "start", self.pg_dir],
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            shutil.rmtree(self.pg_dir, ignore_errors=True)
            self.fail(f"pg-test-server start: {p.stderr.decode(errors='replace')}")
        self.addCleanup(subprocess.run, [os.path.join(SCRIPTS, "pg-test-server"), "stop",
                                         self.pg_dir], capture_output=True, timeout=120)
        self.server_url = p.stdout.decode().strip()
        self.url = self.fresh_db(self.server_url)

    def pg_ctl(self, *args):
        data = os.path.join(self.pg_dir, "data")
        p = subprocess.run(as_cluster_owner([pg_bin("pg_ctl"), "-D", data, "-w", "-t", "60",
                                             "-s", *args]), capture_output=True, timeout=90)
        self.assertEqual(p.returncode, 0, f"pg_ctl {args}: {p.stderr!r} {p.stdout!r}")

    def pg_start(self):
        """Starts the stopped server again with the options pg-test-server gave it."""
        with open(os.path.join(self.pg_dir, "port")) as f:
            port = f.read().strip()
        sock = os.path.join(self.pg_dir, "sock")
        self.pg_ctl("-l", os.path.join(self.pg_dir, "server.log"), "-o",
                    f"-c listen_addresses=127.0.0.1 -c port={port} "
                    f"-c unix_socket_directories={sock} -c fsync=on -c max_connections=300",
                    "start")

    def test_database_restart_under_load_loses_nothing_and_delivery_resumes(self):
        a, b = self.start_nodes(["a", "b"])
        pid = self.setup_partner(a)
        total = 0

        # 1. Load, then the database stops hard (`immediate`: no shutdown checkpoint, the
        # crash-recovery path) while ingest and delivery are running.
        ing = Ingester([a, b], pid, "pre", 600, timeout=60).start()
        self.assertTrue(wait_until(lambda: self.receivers[0].count() >= 50, 30, 0.02))
        self.pg_ctl("-m", "immediate", "stop")
        down_at = time.monotonic()

        # 2. While it is down, no ingest is acknowledged: 503 (or 500), never 2xx.
        probe = Ingester([a, b], pid, "down", 20, clients=4, timeout=0)
        probe.start()
        self.assertTrue(probe.join(30))
        self.assertEqual(probe.acked, set(), f"ingest acknowledged while the database was "
                         f"down: {probe.statuses}")
        refused = {s for s in probe.statuses}
        self.assertTrue(refused <= {500, 503}, f"statuses during the outage: {probe.statuses}")
        # The ingest clients of step 1 keep retrying; hold the outage a moment.
        time.sleep(max(0, 1.5 - (time.monotonic() - down_at)))

        # 3. The database returns: the backlog drains, and a new session is delivered to every
        # endpoint within 5 s of the return.
        self.pg_start()
        back_at = time.monotonic()
        self.assertTrue(ing.join(60), "ingest clients still running")
        self.assertEqual(ing.gave_up, [], f"statuses {ing.statuses}")
        total += len(ing.acked)
        after = Ingester([a, b], pid, "after", 1, clients=1, timeout=5).start()
        self.assertTrue(after.join(10))
        self.assertEqual(len(after.acked), 1, f"ingest after the return: {after.statuses}")
        total += 1

        def reached_all():
            return all("after-0" in session_ids(r.snapshot()) for r in self.receivers)

        self.assertTrue(wait_until(reached_all, max(0.1, back_at + 5 - time.monotonic()), 0.05),
                        "a session ingested after the database returned was not delivered "
                        "within 5 s of its return")
        resumed_in = time.monotonic() - back_at

        # 4. A `pg_ctl restart -m immediate` in the middle of a second wave.
        ing2 = Ingester([a, b], pid, "mid", 600, timeout=60).start()
        time.sleep(0.5)
        self.pg_ctl("-m", "immediate", "-l", os.path.join(self.pg_dir, "server.log"), "restart")
        self.assertTrue(ing2.join(60), "ingest clients still running")
        self.assertEqual(ing2.gave_up, [], f"statuses {ing2.statuses}")
        total += len(ing2.acked)

        # Nothing acknowledged is lost; nothing is left in flight.
        acked = ing.acked | after.acked | ing2.acked
        stored = {r[0] for r in psql(self.url, "SELECT session_id FROM events")}
        self.assertEqual(acked - stored, set(), "acknowledged sessions lost")
        self.assertEqual(stored & probe.acked, set())
        states = self.wait_all_succeeded(self.url, ENDPOINTS * len(stored), 20)
        self.assertEqual(states, {"succeeded": ENDPOINTS * len(stored)},
                         "deliveries lost or stuck after the database restarts" +
                         self.stuck(self.url))
        self.check_receivers(stored)
        print(f"\ndatabase restarts: {len(stored)} sessions, statuses seen while it was down "
              f"{probe.statuses}, during the restart wave {ing2.statuses}; a new session "
              f"reached every endpoint {resumed_in:.2f} s after the database returned",
              file=sys.stderr)



if __name__ == "__main__":
    unittest.main(verbosity=2)
