"""The sender end to end: `vocohook serve` delivers ingested sessions to real receivers on
127.0.0.1, signed, on the documented schedule, with every attempt recorded."""
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from receivers import Receiver  # noqa: E402
from server import SEED_SESSION, Daemon, create_partner, run_cli, seed_session  # noqa: E402


def verify(secret, headers, body):
    ts = headers["x-webhook-timestamp"]
    want = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body,
                                hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, headers["x-webhook-signature"])


class Deliver(unittest.TestCase):
    def setUp(self):
        self.receivers = []
        self.d = Daemon(args=["--allow-http", "--allow-private-networks"])
        self.pid, self.key = create_partner(self.d.db)
        self.d.start()

    def tearDown(self):
        for r in self.receivers:
            r.close()
        self.d.cleanup()

    def receiver(self, behaviour=lambda n: 204):
        r = Receiver(behaviour)
        self.receivers.append(r)
        return r

    def endpoint(self, label, url, enabled=True):
        r = self.d.request("POST", "/api/v2/config/webhooks", key=self.key,
                           body={"label": label, "url": url, "enabled": enabled})
        self.assertEqual(r.status, 201, r)
        data = json.loads(r.body)["data"]
        return data["id"], data["secret"]

    def ingest(self, session):
        r = self.d.request("POST", "/internal/v1/sessions",
                           headers={"Authorization": f"Bearer {self.d.token}"},
                           body={"partner_id": self.pid, "session": session})
        self.assertEqual(r.status, 202, r)
        return json.loads(r.body)["data"]

    def delivery_rows(self):
        path = self.d.db.split(":", 1)[1]
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute("SELECT state, attempts FROM deliveries").fetchall()
        finally:
            con.close()

    def metrics(self):
        h = self.d.request("HEAD", "/metrics")  # a monitor's probe: the head alone
        self.assertEqual((h.status, h.body), (200, b""), h)
        self.assertTrue(h.headers["content-type"].startswith("text/plain"), h.headers)
        r = self.d.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("text/plain"), r.headers)
        out = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def restart_with(self, *flags):
        """Replaces the daemon with one on a new store, started with `flags` as well."""
        self.d.cleanup()
        self.d = Daemon(args=["--allow-http", "--allow-private-networks", *flags])
        self.pid, self.key = create_partner(self.d.db)
        self.d.start()

    def wait_metrics(self, ok, timeout=15):
        """Reads /metrics until `ok(metrics)`; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if ok(m):
                return m
            self.assertLess(time.monotonic(), deadline, m)
            time.sleep(0.05)  # the daemon's counters: no event to await

    def wait_state(self, state, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.delivery_rows()
            if rows and all(r[0] == state for r in rows):
                return rows
            time.sleep(0.05)  # polling a file another process writes: no event to await
        self.fail(f"deliveries never all reached {state}: {self.delivery_rows()}")

    def test_fan_out_to_enabled_endpoints_signed_and_identical(self):
        recv = [self.receiver() for _ in range(4)]
        eps = [self.endpoint(f"ep{i}", r.url, enabled=(i < 3)) for i, r in enumerate(recv)]
        session = seed_session()
        data = self.ingest(session)
        self.assertEqual(data["deliveries"], 3)
        for r in recv[:3]:
            self.assertEqual(r.wait_count(1, 15), 1)
        self.wait_state("succeeded", 15)
        self.assertEqual(len(recv[3].requests), 0)  # the disabled endpoint got nothing

        bodies = set()
        for (ep_id, secret), r in zip(eps[:3], recv[:3]):
            _, headers, body = r.requests[0]
            self.assertTrue(verify(secret, headers, body), "signature does not verify")
            for other_id, other_secret in eps[:3]:
                if other_secret != secret:
                    self.assertFalse(verify(other_secret, headers, body))
            self.assertEqual(headers["content-type"], "application/json")
            self.assertEqual(headers["x-webhook-id"], data["event_id"])
            self.assertTrue(headers["user-agent"].startswith("vocohook/"))
            self.assertRegex(headers["x-webhook-timestamp"],
                             r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            bodies.add(body)
        self.assertEqual(len(bodies), 1, "bodies differ between endpoints")
        body = bodies.pop()
        # The body is exactly what `vocohook render` makes of the input at that timestamp.
        ts = json.loads(body)["timestamp"]
        rc, rendered, err = run_cli("render", "--timestamp", ts, SEED_SESSION)
        self.assertEqual(rc, 0, err)
        self.assertEqual(body.decode(), rendered)
        # The endpoint objects follow.
        r = self.d.request("GET", f"/api/v2/config/webhooks/{eps[0][0]}", key=self.key)
        ep = json.loads(r.body)["data"]
        self.assertEqual(ep["last_delivery_status"], "succeeded")
        self.assertIsNotNone(ep["last_delivery_at"])
        m = self.metrics()
        self.assertEqual(m['vocohook_attempts_total{result="ok"}'], 3)
        self.assertEqual(m['vocohook_deliveries_finished_total{outcome="succeeded"}'], 3)
        self.assertEqual(m['vocohook_attempt_duration_seconds_count'], 3)
        self.assertEqual(m['vocohook_attempt_duration_seconds_bucket{le="+Inf"}'], 3)
        self.assertEqual(m["vocohook_queue_pending"], 0)

    def test_always_500_is_four_attempts_on_schedule_then_abandoned(self):
        r = self.receiver(lambda n: 500)
        self.endpoint("failing", r.url)
        self.ingest(seed_session())
        self.assertEqual(r.wait_count(4, 20), 4)
        rows = self.wait_state("abandoned", 10)
        self.assertEqual(rows, [("abandoned", 4)])
        times = [t for t, _, _ in r.requests]
        gaps = [b - a for a, b in zip(times, times[1:])]
        for gap, want in zip(gaps, (1.0, 2.0, 4.0)):
            self.assertAlmostEqual(gap, want, delta=0.25, msg=f"gaps {gaps}")
        # Every attempt carries a fresh timestamp and the same body.
        self.assertEqual(len({h["x-webhook-timestamp"] for _, h, _ in r.requests}), 4)
        self.assertEqual(len({b for _, _, b in r.requests}), 1)
        self.assertEqual(r.wait_count(5, 1.5), 4)  # and no fifth
        ep = json.loads(self.d.request("GET", "/api/v2/config/webhooks", key=self.key).body)
        self.assertEqual(ep["data"][0]["last_delivery_status"], "failed")
        m = self.metrics()
        self.assertEqual(m['vocohook_attempts_total{result="http_status"}'], 4)
        self.assertEqual(m['vocohook_deliveries_finished_total{outcome="abandoned"}'], 1)

    def test_fails_twice_then_succeeds(self):
        r = self.receiver(lambda n: 503 if n <= 2 else 200)
        self.endpoint("flaky", r.url)
        self.ingest(seed_session())
        self.wait_state("succeeded", 20)
        self.assertEqual(self.delivery_rows(), [("succeeded", 3)])
        self.assertEqual(len(r.requests), 3)

    def test_rotated_secret_signs_from_then_on(self):
        r = self.receiver()
        ep_id, old = self.endpoint("rot", r.url)
        resp = self.d.request("POST", f"/api/v2/config/webhooks/{ep_id}/rotate-secret",
                              key=self.key)
        new = json.loads(resp.body)["data"]["secret"]
        self.ingest(seed_session())
        self.assertEqual(r.wait_count(1, 15), 1)
        _, headers, body = r.requests[0]
        self.assertTrue(verify(new, headers, body))
        self.assertFalse(verify(old, headers, body))

    def deliveries(self, ep_id, state=None):
        path = f"/api/v2/config/webhooks/{ep_id}/deliveries" + (f"?state={state}" if state else "")
        r = self.d.request("GET", path, key=self.key)
        self.assertEqual(r.status, 200, r)
        return json.loads(r.body)["data"]

    def test_history_retry_and_replay(self):
        answers = {"status": 500}
        r = self.receiver(lambda n: answers["status"])
        ep_id, _ = self.endpoint("hist", r.url,)
        r2 = self.d.request("PATCH", f"/api/v2/config/webhooks/{ep_id}", key=self.key,
                            body={"retry_schedule": "0,200ms", "timeout_ms": 2000})
        self.assertEqual(r2.status, 200, r2)
        ep = json.loads(r2.body)["data"]
        self.assertEqual((ep["retry_schedule"], ep["timeout_ms"]), ("0,200ms", 2000))
        bad = self.d.request("PATCH", f"/api/v2/config/webhooks/{ep_id}", key=self.key,
                             body={"retry_schedule": "0,fast"})
        self.assertEqual(bad.status, 400, bad)
        self.assertIn("retry_schedule", json.loads(bad.body)["error"]["message"])

        self.ingest(seed_session())
        self.assertEqual(r.wait_count(2, 15), 2)  # the endpoint's own two-step schedule
        self.wait_state("abandoned", 10)
        listing = self.deliveries(ep_id)
        self.assertEqual(listing["total"], 1)
        d = listing["deliveries"][0]
        self.assertEqual((d["state"], d["attempts"], d["last_http_status"]),
                         ("abandoned", 2, 500))
        self.assertEqual(self.deliveries(ep_id, "succeeded")["total"], 0)
        one = self.d.request("GET", f"/api/v2/deliveries/{d['id']}", key=self.key)
        self.assertEqual(one.status, 200, one)
        hist = json.loads(one.body)["data"]["attempt_history"]
        self.assertEqual([a["n"] for a in hist], [1, 2])
        self.assertEqual({a["http_status"] for a in hist}, {500})
        self.assertEqual(hist[0]["error_class"], "http_status")
        self.assertEqual(hist[0]["response_head"], '{"error":"nope"}')
        # Another partner sees none of it.
        _, other = create_partner(self.d.db, "other")
        self.assertEqual(self.d.request("GET", f"/api/v2/deliveries/{d['id']}",
                                        key=other).status, 404)

        # A manual retry: a fresh schedule, the history kept.
        answers["status"] = 204
        rr = self.d.request("POST", f"/api/v2/deliveries/{d['id']}/retry", key=self.key)
        self.assertEqual(rr.status, 202, rr)
        self.assertEqual(r.wait_count(3, 15), 3)
        self.wait_state("succeeded", 10)
        hist = json.loads(self.d.request("GET", f"/api/v2/deliveries/{d['id']}",
                                         key=self.key).body)["data"]["attempt_history"]
        self.assertEqual([a["n"] for a in hist], [1, 2, 3])
        self.assertIsNone(hist[2]["error_class"])

        # A replay of the time range: one more delivery of the same event.
        rp = self.d.request("POST", f"/api/v2/config/webhooks/{ep_id}/replay", key=self.key,
                            body={"since": "2000-01-01T00:00:00.000Z"})
        self.assertEqual(rp.status, 202, rp)
        self.assertEqual(json.loads(rp.body)["data"]["deliveries"], 1)
        self.assertEqual(r.wait_count(4, 15), 4)
        self.assertEqual(r.requests[3][2], r.requests[0][2])  # the same stored body
        rp = self.d.request("POST", f"/api/v2/config/webhooks/{ep_id}/replay", key=self.key,
                            body={"since": "yesterday"})
        self.assertEqual(rp.status, 400, rp)
        # A range that ends before it starts names the field that makes it so.
        rp = self.d.request("POST", f"/api/v2/config/webhooks/{ep_id}/replay", key=self.key,
                            body={"since": "2999-01-01T00:00:00.000Z"})
        self.assertEqual(rp.status, 400, rp)
        self.assertEqual(rp.json()["error"]["message"], "since: is in the future (until is now)")
        rp = self.d.request("POST", f"/api/v2/config/webhooks/{ep_id}/replay", key=self.key,
                            body={"since": "2026-01-02T00:00:00.000Z",
                                  "until": "2026-01-01T00:00:00.000Z"})
        self.assertEqual(rp.status, 400, rp)
        self.assertEqual(rp.json()["error"]["message"], "since: is after until")

    def test_disabling_an_endpoint_cancels_its_retries(self):
        r = self.receiver(lambda n: 500)
        ep_id, _ = self.endpoint("cancel", r.url)
        self.d.request("PATCH", f"/api/v2/config/webhooks/{ep_id}", key=self.key,
                       body={"retry_schedule": "0,3s,3s,3s"})
        self.ingest(seed_session())
        self.assertEqual(r.wait_count(1, 15), 1)
        self.d.request("PATCH", f"/api/v2/config/webhooks/{ep_id}", key=self.key,
                       body={"enabled": False})
        self.wait_state("canceled", 10)
        self.assertEqual(r.wait_count(2, 4), 1)  # the 3 s retry never comes

    def test_legacy_put_kills_the_old_default_secret(self):
        r = self.receiver()
        secrets = []
        for _ in range(2):
            resp = self.d.request("PUT", "/api/v2/config/webhook", key=self.key,
                                  body={"webhook_url": r.url})
            self.assertEqual(resp.status, 200, resp)
            secrets.append(json.loads(resp.body)["data"]["webhook_secret"])
        self.ingest(seed_session())
        self.assertEqual(r.wait_count(1, 15), 1)
        _, headers, body = r.requests[0]
        self.assertTrue(verify(secrets[1], headers, body))
        self.assertFalse(verify(secrets[0], headers, body))

    def test_restart_resumes_pending_deliveries(self):
        r = self.receiver(lambda n: 500 if n == 1 else 204)
        self.endpoint("resume", r.url)
        self.ingest(seed_session())
        self.assertEqual(r.wait_count(1, 15), 1)
        self.d.kill()  # SIGKILL: the retry is due in 1 s and lives only in the store
        self.d.start()
        self.assertEqual(r.wait_count(2, 15), 2)
        self.wait_state("succeeded", 15)

    def test_an_attempt_out_shows_in_flight_and_a_kill_sends_it_again(self):
        # On SQLite a claim lives in the daemon's memory, not in the file (docs/decisions.md):
        # the daemon's own API and metrics show the delivery in flight while the file still
        # says pending, and a SIGKILL loses only the claim: the restart sends it again.
        release = threading.Event()
        r = self.receiver(lambda n: 204 if n > 1 or release.wait(30) else 500)
        ep_id, _ = self.endpoint("held", r.url)
        self.ingest(seed_session())
        self.assertEqual(r.wait_count(1, 15), 1)  # the attempt is out, its answer held back

        shown = self.deliveries(ep_id, "in_flight")
        self.assertEqual(shown["total"], 1, shown)
        self.assertEqual([d["state"] for d in shown["deliveries"]], ["in_flight"], shown)
        self.assertEqual(self.deliveries(ep_id, "pending")["total"], 0)
        listing = self.deliveries(ep_id)
        self.assertEqual([d["state"] for d in listing["deliveries"]], ["in_flight"], listing)
        m = self.metrics()
        self.assertEqual((m["vocohook_queue_in_flight"], m["vocohook_queue_pending"]), (1, 0), m)
        self.assertEqual(self.delivery_rows(), [("pending", 0)])

        self.d.kill()
        release.set()
        self.d.start()
        self.assertEqual(r.wait_count(2, 15), 2)
        self.assertEqual(r.requests[0][2], r.requests[1][2])  # the same body, sent again
        self.assertEqual(self.wait_state("succeeded", 15), [("succeeded", 1)])

    def test_claims_hold_at_most_the_delivery_memory(self):
        # `delivery_memory` bounds the payloads the sender holds for its claims, plus one
        # (docs/decisions.md, "The sender's memory"): with 100 KiB and sessions of about
        # 70 KB, two attempts are out at a time and the rest wait in the store, where without
        # the bound all six would be claimed and sent at once (8 connections per endpoint).
        # Requests past 64 KiB also make the engine free an idle connection's request
        # buffer (engine.c, REQ_KEEP_MAX) before the connection's next request.
        self.restart_with("--delivery-memory", "100KiB")
        release = threading.Event()
        lock = threading.Lock()
        held = {"now": 0, "most": 0}

        def behaviour(n):
            with lock:
                held["now"] += 1
                held["most"] = max(held["most"], held["now"])
            release.wait(30)
            with lock:
                held["now"] -= 1  # before the answer: the next claim waits for it
            return 204

        r = self.receiver(behaviour)
        self.endpoint("big", r.url)
        base = seed_session()
        turns = base["transcript"] * (70000 // len(json.dumps(base["transcript"])))
        for _ in range(6):
            self.ingest(dict(base, session_id=str(uuid.uuid4()), transcript=turns))
        self.assertEqual(r.wait_count(2, 15), 2)
        m = self.wait_metrics(lambda m: (m["vocohook_queue_in_flight"],
                                         m["vocohook_queue_pending"]) == (2, 4))
        sizes = [len(body) for _, _, body in r.requests]
        self.assertTrue(all(65536 < n <= 102400 < 2 * n for n in sizes), sizes)
        self.assertEqual(m["vocohook_delivery_memory_bytes"], sum(sizes), m)

        release.set()
        self.assertEqual(self.wait_state("succeeded", 30), [("succeeded", 1)] * 6)
        self.assertEqual(len(r.requests), 6)
        self.assertEqual(held["most"], 2)
        self.wait_metrics(lambda m: m["vocohook_delivery_memory_bytes"] == 0)

    def test_a_full_delivery_memory_claims_again_once_attempts_end(self):
        # With `delivery_memory` smaller than one session, one delivery is out at a time.
        # When it ends, the record that frees its bytes must let the next claim go at once,
        # not after the idle poll (1 s): five deliveries took five seconds that way.
        self.restart_with("--delivery-memory", "1KiB")
        release = threading.Event()

        def behaviour(n):
            if n == 1:
                release.wait(30)  # until all six are ingested: the rest wait in the store
            return 204

        r = self.receiver(behaviour)
        self.endpoint("small", r.url)
        base = seed_session()
        turns = base["transcript"] * 4  # past 1 KiB rendered
        for _ in range(6):
            self.ingest(dict(base, session_id=str(uuid.uuid4()), transcript=turns))
        self.assertEqual(r.wait_count(1, 15), 1)
        self.wait_metrics(lambda m: (m["vocohook_queue_in_flight"],
                                     m["vocohook_queue_pending"]) == (1, 5))
        self.assertEqual(len(r.requests), 1)  # the bound holds the others back
        start = time.monotonic()
        release.set()
        self.assertEqual(r.wait_count(6, 15), 6)
        self.assertTrue(all(len(body) > 1024 for _, _, body in r.requests))
        took = r.requests[-1][0] - start
        self.assertLess(took, 2.5, [round(t - start, 3) for t, _, _ in r.requests])
        self.assertEqual(self.wait_state("succeeded", 15), [("succeeded", 1)] * 6)

    def test_stop_records_every_finished_attempt(self):
        # Finished attempts wait a few ms for company before they are recorded (sender.c,
        # RECORD_LINGER_MS); a stop in that window must record them, not leave the rows in
        # flight for their lease (10 min) to bring them back as duplicates.
        r = self.receiver()
        self.endpoint("stop", r.url)
        for i in range(20):
            session = seed_session()
            session["session_id"] = f"stop-{i}"
            self.ingest(session)
        self.assertEqual(r.wait_count(20, 15), 20)
        self.d.stop()  # asserts a clean exit
        self.assertEqual(sorted(self.delivery_rows()), [("succeeded", 1)] * 20)


if __name__ == "__main__":
    unittest.main(verbosity=2)
