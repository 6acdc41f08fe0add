"""The partner API's delivery history, retry, replay and calls routes under hostile use: another
partner's ids, out-of-range paging, malformed replay ranges, retries in every state and at
once. One daemon for the whole file; each test makes the rows it reads."""
import json
import os
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from receivers import Receiver  # noqa: E402
from server import Daemon, create_partner, seed_session  # noqa: E402

API = "/api/v2"
EPOCH = "1970-01-01T00:00:00.000Z"


class PartnerEdges(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(args=["--allow-http", "--allow-private-networks", "--rate-limit", "off",
                              "--rate-limit-calls", "off"])
        cls.pa, cls.ka = create_partner(cls.d.db, "alpha")
        cls.pb, cls.kb = create_partner(cls.d.db, "beta")
        cls.d.start()
        cls.failing = Receiver(lambda n: 500)
        cls.ok = Receiver(lambda n: 204)

    @classmethod
    def tearDownClass(cls):
        cls.failing.close()
        cls.ok.close()
        cls.d.stop()
        cls.d.cleanup()

    # -- helpers ----------------------------------------------------------------------------

    def call(self, method, path, key=None, body=None):
        r = self.d.request(method, API + path, key=key or self.ka, body=body)
        return r.status, r.json()

    def endpoint(self, url, key=None, **extra):
        st, j = self.call("POST", "/config/webhooks", key=key,
                          body={"label": "e" + uuid.uuid4().hex[:12], "url": url, **extra})
        self.assertEqual(st, 201, j)
        # At most 5 endpoints per partner: each test's go when it ends.
        self.addCleanup(self.call, "DELETE", f"/config/webhooks/{j['data']['id']}", key)
        return j["data"]["id"]

    def ingest(self, partner_id):
        s = seed_session()
        s["session_id"] = "edge-" + uuid.uuid4().hex
        r = self.d.ingest(partner_id, s)
        self.assertEqual(r.status, 202, r)
        return s["session_id"]

    def deliveries(self, ep, query="", key=None):
        st, j = self.call("GET", f"/config/webhooks/{ep}/deliveries{query}", key=key)
        self.assertEqual(st, 200, j)
        return j["data"]

    def wait_states(self, ep, want, n, attempted=False, timeout=10):
        """The endpoint's deliveries once `n` are all in a state of `want` (and, when
        `attempted`, each has an attempt in its current budget)."""
        deadline = time.monotonic() + timeout
        while True:
            ds = self.deliveries(ep, "?limit=100")["deliveries"]
            if len(ds) >= n and all(d["state"] in want and (d["attempts"] or not attempted)
                                    for d in ds):
                return ds
            if time.monotonic() > deadline:
                self.fail(f"deliveries never reached {want}: {ds}")
            time.sleep(0.05)

    def assert_error(self, res, status, field):
        st, j = res
        self.assertEqual(st, status, j)
        self.assertFalse(j["success"], j)
        if field:
            self.assertTrue(j["error"]["message"].startswith(field + ":"), j)

    # -- tests ------------------------------------------------------------------------------

    def test_another_partners_ids_are_not_found_and_replay_stays_in_its_partner(self):
        ep_a = self.endpoint(self.ok.url)
        sid = self.ingest(self.pa)
        did = self.wait_states(ep_a, {"succeeded"}, 1)[0]["id"]
        ep_b = self.endpoint(self.ok.url, key=self.kb)
        kb = self.kb
        self.assert_error(self.call("GET", f"/config/webhooks/{ep_a}/deliveries", key=kb), 404,
                          None)
        self.assert_error(self.call("POST", f"/config/webhooks/{ep_a}/replay", key=kb,
                                    body={"since": EPOCH}), 404, None)
        self.assert_error(self.call("GET", f"/deliveries/{did}", key=kb), 404, None)
        self.assert_error(self.call("POST", f"/deliveries/{did}/retry", key=kb), 404, None)
        self.assert_error(self.call("GET", f"/calls/{sid}", key=kb), 404, None)
        st, j = self.call("GET", "/calls?limit=100", key=kb)
        self.assertEqual(st, 200, j)
        self.assertNotIn(sid, [c["session"]["session_id"] for c in j["data"]["calls"]])
        # B's replay of all time covers B's events only (B has none).
        st, j = self.call("POST", f"/config/webhooks/{ep_b}/replay", key=kb, body={"since": EPOCH})
        self.assertEqual((st, j["data"]["deliveries"]), (202, 0), j)
        self.assertEqual(self.deliveries(ep_b, key=kb)["total"], 0)
        # Nothing of A's was touched by B's tries: still one delivery, one attempt.
        st, j = self.call("GET", f"/deliveries/{did}")
        self.assertEqual((st, j["data"]["state"], len(j["data"]["attempt_history"])),
                         (200, "succeeded", 1), j)

    def test_paging_bounds_name_the_field(self):
        ep = self.endpoint(self.ok.url)
        for q, field in [("limit=0", "limit"), ("limit=101", "limit"), ("limit=-1", "limit"),
                         ("limit=99999999999999999999999", "limit"), ("limit=abc", "limit"),
                         ("limit=", "limit"), ("limit=%2B5", "limit"), ("limit=%205", "limit"),
                         ("limit=1%00x", "limit"), ("offset=-1", "offset"),
                         ("offset=1000000001", "offset"), ("offset=0x1", "offset"),
                         ("offset=99999999999999999999999", "offset")]:
            with self.subTest(q=q):
                self.assert_error(self.call("GET", f"/config/webhooks/{ep}/deliveries?{q}"), 400,
                                  field)
                self.assert_error(self.call("GET", f"/calls?{q}"), 400, field)
        for q in ["state=bogus", "state=", "state=succeeded%00x"]:
            self.assert_error(self.call("GET", f"/config/webhooks/{ep}/deliveries?{q}"), 400,
                              "state")
        for q in ["status=bogus", "status=", "status=completed%00x"]:
            self.assert_error(self.call("GET", f"/calls?{q}"), 400, "status")
        # The largest offset is an empty page, not an error.
        st, j = self.call("GET", "/calls?offset=1000000000")
        self.assertEqual((st, j["data"]["calls"], j["data"]["next_offset"]), (200, [], None), j)

    def test_pages_cover_every_row_once(self):
        ep = self.endpoint(self.ok.url)
        for _ in range(5):
            self.ingest(self.pa)
        ds = self.wait_states(ep, {"succeeded"}, 5)
        seen = []
        for off in range(0, 5, 2):
            page = self.deliveries(ep, f"?limit=2&offset={off}")
            self.assertEqual(page["total"], 5)
            seen += [d["id"] for d in page["deliveries"]]
        self.assertEqual(sorted(seen), sorted(d["id"] for d in ds))
        events, off = [], 0
        while off is not None:
            st, j = self.call("GET", f"/calls?limit=3&offset={off}")
            self.assertEqual(st, 200, j)
            events += [c["event_id"] for c in j["data"]["calls"]]
            off = j["data"]["next_offset"]
        self.assertEqual(len(events), len(set(events)))
        self.assertTrue({d["event_id"] for d in ds} <= set(events))

    def test_replay_ranges_are_checked_and_name_the_field(self):
        ep = self.endpoint(self.ok.url)
        cases = [({"since": "1969-12-31T23:59:59.999Z"}, "since"), ({"since": 0}, "since"),
                 ({"since": None}, "since"), ({}, "since"),
                 ({"since": "2026-02-30T00:00:00.000Z"}, "since"),
                 ({"since": "x" * 100000}, "since"),
                 ({"since": EPOCH, "until": 5}, "until"),
                 ({"since": EPOCH, "until": "10000-01-01T00:00:00.000Z"}, "until"),
                 ({"since": "2026-01-02T00:00:00.000Z", "until": "2026-01-01T00:00:00.000Z"},
                  "since"),
                 ({"since": EPOCH, "extra": 1}, None)]
        for body, field in cases:
            with self.subTest(body=str(body)[:80]):
                self.assert_error(self.call("POST", f"/config/webhooks/{ep}/replay", body=body),
                                  400, field)
        self.assertEqual(self.deliveries(ep)["total"], 0)  # nothing half-made
        # The widest range the time format allows is fine.
        st, j = self.call("POST", f"/config/webhooks/{ep}/replay",
                          body={"since": EPOCH, "until": "9999-12-31T23:59:59.999Z"})
        self.assertEqual(st, 202, j)

    def test_retry_in_each_state(self):
        ep = self.endpoint(self.failing.url, retry_schedule="0,1h")
        self.ingest(self.pa)
        did = self.wait_states(ep, {"pending"}, 1, attempted=True)[0]["id"]
        # Pending (its next attempt an hour away): not again.
        self.assert_error(self.call("POST", f"/deliveries/{did}/retry"), 409, None)
        # Disabled: canceled, and no retry while it stays so; nor a replay.
        st, _ = self.call("PATCH", f"/config/webhooks/{ep}", body={"enabled": False})
        self.assertEqual(st, 200)
        self.wait_states(ep, {"canceled"}, 1)
        self.assert_error(self.call("POST", f"/deliveries/{did}/retry"), 409, None)
        self.assert_error(self.call("POST", f"/config/webhooks/{ep}/replay",
                                    body={"since": EPOCH}), 409, None)
        # Enabled again: the canceled delivery may go again.
        st, _ = self.call("PATCH", f"/config/webhooks/{ep}",
                          body={"enabled": True, "url": self.ok.url})
        self.assertEqual(st, 200)
        st, j = self.call("POST", f"/deliveries/{did}/retry")
        self.assertEqual((st, j["data"]), (202, {"id": did, "state": "pending"}), j)
        self.wait_states(ep, {"succeeded"}, 1)
        # Succeeded: a manual retry sends it once more.
        st, j = self.call("POST", f"/deliveries/{did}/retry")
        self.assertEqual(st, 202, j)
        self.wait_states(ep, {"succeeded"}, 1)
        st, j = self.call("GET", f"/deliveries/{did}")
        self.assertEqual([a["n"] for a in j["data"]["attempt_history"]], [1, 2, 3], j)
        # Deleted: the history stays readable, the retry is refused.
        st, _ = self.call("DELETE", f"/config/webhooks/{ep}")
        self.assertIn(st, (200, 204))
        self.assertEqual(self.call("GET", f"/deliveries/{did}")[0], 200)
        self.assert_error(self.call("POST", f"/deliveries/{did}/retry"), 409, None)
        self.assert_error(self.call("GET", f"/config/webhooks/{ep}/deliveries"), 404, None)
        self.assert_error(self.call("POST", f"/config/webhooks/{ep}/replay",
                                    body={"since": EPOCH}), 404, None)
        for bad in ["not-a-uuid", "a" * 64, "a" * 65]:
            self.assert_error(self.call("POST", f"/deliveries/{bad}/retry"), 404, None)
            self.assert_error(self.call("GET", f"/deliveries/{bad}"), 404, None)

    def test_concurrent_retries_make_one_attempt(self):
        ep = self.endpoint(self.failing.url, retry_schedule="0")
        self.ingest(self.pa)
        did = self.wait_states(ep, {"abandoned"}, 1)[0]["id"]
        # The retry's attempt fails too, and then waits an hour: any second 202 is a race lost.
        st, _ = self.call("PATCH", f"/config/webhooks/{ep}", body={"retry_schedule": "0,1h"})
        self.assertEqual(st, 200)
        before = len(self.failing.requests)
        statuses = []
        lock = threading.Lock()
        go = threading.Barrier(8)

        def retry():
            go.wait()
            st, _ = self.call("POST", f"/deliveries/{did}/retry")
            with lock:
                statuses.append(st)

        threads = [threading.Thread(target=retry) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(statuses), [202] + [409] * 7)
        self.assertEqual(self.failing.wait_count(before + 1, 10), before + 1)
        self.wait_states(ep, {"pending"}, 1, attempted=True)
        deadline = time.monotonic() + 10
        while True:
            st, j = self.call("GET", f"/deliveries/{did}")
            if len(j["data"]["attempt_history"]) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual([a["n"] for a in j["data"]["attempt_history"]], [1, 2], j)
        self.assertEqual(self.failing.wait_count(before + 2, 0.3), before + 1)


if __name__ == "__main__":
    unittest.main()
