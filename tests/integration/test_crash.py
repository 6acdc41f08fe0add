"""Crash safety of the sender: `kill -9` during concurrent ingests and during delivery loses
nothing that was acknowledged, and a restart finishes every delivery."""
import concurrent.futures
import http.client
import json
import os
import sqlite3
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from receivers import Receiver  # noqa: E402
from server import Daemon, create_partner, seed_session  # noqa: E402


def ingest_body(pid, sid):
    """An ingest body: the seed session as `sid` (its call as `c-<sid>`) for partner `pid`."""
    s = seed_session()
    s["session_id"] = sid
    s["call"]["call_id"] = "c-" + sid
    return json.dumps({"partner_id": pid, "session": s}).encode()


def post_ingest(host, port, token, body, timeout=10):
    """One ingest over a fresh connection -> status, or None when the daemon died."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request("POST", "/internal/v1/sessions", body=body,
                  headers={"Authorization": f"Bearer {token}",
                           "Content-Type": "application/json"})
        status = c.getresponse().status
        c.close()
        return status
    except (OSError, http.client.HTTPException):
        return None


class Crash(unittest.TestCase):
    def setUp(self):
        self.receivers = []
        self.d = Daemon(args=["--allow-http", "--allow-private-networks"])
        self.pid, self.key = create_partner(self.d.db)

    def tearDown(self):
        for r in self.receivers:
            r.close()
        self.d.cleanup()

    def db(self):
        return sqlite3.connect(self.d.db.split(":", 1)[1], timeout=10)

    def failures(self):
        """What the failed attempts were, for assertion messages."""
        con = self.db()
        try:
            return con.execute("SELECT error_class, http_status, error, count(*) FROM attempts "
                               "WHERE error_class IS NOT NULL GROUP BY 1, 2, 3").fetchall()
        finally:
            con.close()

    def endpoint(self, label, url):
        r = self.d.request("POST", "/api/v2/config/webhooks", key=self.key,
                           body={"label": label, "url": url})
        self.assertEqual(r.status, 201, r)

    def body(self, sid):
        return ingest_body(self.pid, sid)

    def test_identical_concurrent_ingests_store_one_session(self):
        self.d.start()
        self.endpoint("one", "https://example.invalid/hook")
        body = self.body("same-session")
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: post_ingest(self.d.host, self.d.port,
                                                           self.d.token, body), range(20)))
        self.assertEqual(sorted(statuses), [200] * 19 + [202])
        con = self.db()
        self.assertEqual(con.execute("SELECT count(*) FROM events").fetchone()[0], 1)
        self.assertEqual(con.execute("SELECT count(*) FROM deliveries").fetchone()[0], 1)
        con.close()

    def test_kill_during_concurrent_ingests_loses_no_acknowledged_session(self):
        recv = Receiver()
        self.receivers.append(recv)
        self.d.start()
        self.endpoint("a", recv.url)
        self.endpoint("b", recv.url.replace("/hook", "/other"))
        acked, lock = [], threading.Lock()
        stop = threading.Event()

        def client(n):
            i = 0
            while not stop.is_set():
                sid = f"k{n}-{i}"
                if post_ingest(self.d.host, self.d.port, self.d.token, self.body(sid)) == 202:
                    with lock:
                        acked.append(sid)
                i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 100:
                    break
            time.sleep(0.01)
        self.d.kill()  # SIGKILL while the clients are still sending
        stop.set()
        for t in threads:
            t.join()
        self.assertGreaterEqual(len(acked), 100)

        con = self.db()
        self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        stored = {r[0] for r in con.execute("SELECT session_id FROM events")}
        missing = set(acked) - stored
        self.assertEqual(missing, set(), "acknowledged sessions lost")
        per_event = con.execute("SELECT count(*) FROM events e WHERE (SELECT count(*) FROM "
                                "deliveries d WHERE d.event_seq = e.seq) != 2").fetchone()[0]
        self.assertEqual(per_event, 0, "an event without its two deliveries")
        total = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.close()

        # Restart: every delivery of every stored event reaches the receiver.
        self.d.start()
        self.assertGreaterEqual(recv.wait_count(2 * total, 60), 2 * total)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            con = self.db()
            left = con.execute("SELECT count(*) FROM deliveries WHERE state != 'succeeded'"
                               ).fetchone()[0]
            con.close()
            if left == 0:
                break
            time.sleep(0.1)  # another process's file: poll with a deadline
        self.assertEqual(left, 0, f"deliveries not finished after restart: {self.failures()}")
        got = {json.loads(b)["data"]["session_id"] for _, _, b in recv.requests}
        self.assertEqual(got, stored)

    def test_kill_during_delivery_then_restart_delivers_everything(self):
        slow = {"delay": 0.002}

        def behaviour(n):
            time.sleep(slow["delay"])
            return 204

        recv = [Receiver(behaviour), Receiver(behaviour)]
        self.receivers += recv
        self.d.start()
        self.endpoint("r1", recv[0].url)
        self.endpoint("r2", recv[1].url)
        self.d.stop()
        # 500 sessions committed while the daemon is down, then delivered.
        from server import run_cli
        for i in range(500):
            s = seed_session()
            s["session_id"] = f"bulk-{i}"
            s["call"]["call_id"] = f"cb-{i}"
            path = os.path.join(self.d.tmp, "s.json")
            with open(path, "w") as f:
                json.dump(s, f)
            rc, out, err = run_cli("emit", path, "--partner", self.pid, "--db", self.d.db)
            self.assertEqual(rc, 0, err)
        self.d.start()
        self.assertGreaterEqual(recv[0].wait_count(50, 30), 50)
        self.d.kill()  # mid-delivery
        self.d.start()
        for r in recv:
            self.assertGreaterEqual(r.wait_count(500, 60), 500)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            con = self.db()
            states = dict(con.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
            con.close()
            if states == {"succeeded": 1000}:
                break
            time.sleep(0.1)
        self.assertEqual(states, {"succeeded": 1000}, self.failures())
        for r in recv:  # every session arrived (at least once) at each endpoint
            got = {json.loads(b)["data"]["session_id"] for _, _, b in r.requests}
            self.assertEqual(len(got), 500)
        con = self.db()
        # attempt rows are consistent: numbered 1..attempts per delivery, one success each
        bad = con.execute("SELECT count(*) FROM deliveries d WHERE d.attempts != (SELECT "
                          "count(*) FROM attempts a WHERE a.delivery_seq = d.seq)").fetchone()[0]
        self.assertEqual(bad, 0)
        con.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
