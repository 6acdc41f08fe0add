"""The two daemons together: `vocohook serve` delivers to `vocohook receive`, which verifies
with the endpoint's secret, stores the exact body once, and answers at once; a rotated
secret is accepted while the receiver holds both."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from recv_harness import Receiver, wait_until  # noqa: E402
from server import Daemon, create_partner, seed_session  # noqa: E402


class SenderToReceiver(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(args=["--allow-http", "--allow-private-networks"])
        self.pid, self.key = create_partner(self.d.db)
        self.d.start()
        self.recv = None

    def tearDown(self):
        if self.recv:
            self.recv.kill()
        self.d.cleanup()

    def ingest(self, sid):
        s = seed_session()
        s["session_id"] = sid
        s["call"]["call_id"] = "c-" + sid
        r = self.d.request("POST", "/internal/v1/sessions",
                           headers={"Authorization": f"Bearer {self.d.token}"},
                           body={"partner_id": self.pid, "session": s})
        self.assertEqual(r.status, 202, r)

    def delivery_states(self, ep_id):
        r = self.d.request("GET", f"/api/v2/config/webhooks/{ep_id}/deliveries", key=self.key)
        return [d["state"] for d in json.loads(r.body)["data"]["deliveries"]]

    def test_delivered_verified_stored_once_and_rotation(self):
        # The endpoint must exist (and its secret be known) before the receiver starts.
        placeholder = "http://127.0.0.1:9/webhook"
        r = self.d.request("POST", "/api/v2/config/webhooks", key=self.key,
                           body={"label": "recv", "url": placeholder, "enabled": False})
        self.assertEqual(r.status, 201, r)
        ep = json.loads(r.body)["data"]
        self.recv = Receiver(secrets=(ep["secret"],)).start()
        url = f"http://127.0.0.1:{self.recv.port}/webhook"
        r = self.d.request("PATCH", f"/api/v2/config/webhooks/{ep['id']}", key=self.key,
                           body={"url": url, "enabled": True})
        self.assertEqual(r.status, 200, r)

        self.ingest("e2e-1")
        wait_until(lambda: self.recv.count() == 1, 15, "the session to be stored")
        wait_until(lambda: self.delivery_states(ep["id"]) == ["succeeded"], 15,
                   "the delivery to succeed")
        stored = self.recv.export()["e2e-1"]
        self.assertEqual(stored["session_id"], "e2e-1")

        # Rotate: the receiver knows only the old secret, so the next delivery is refused
        # (401) and retried; once it holds both, the retry is accepted.
        r = self.d.request("POST", f"/api/v2/config/webhooks/{ep['id']}/rotate-secret",
                           key=self.key)
        new = json.loads(r.body)["data"]["secret"]
        self.ingest("e2e-2")
        wait_until(lambda: self.last_status(ep["id"], "e2e-2") == 401, 15,
                   "the receiver to refuse the new secret")
        self.assertEqual(self.recv.count(), 1)
        self.recv.stop()
        self.recv = Receiver(secrets=(new, ep["secret"]), tmp=self.recv.tmp)
        self.recv.start()
        r = self.d.request("PATCH", f"/api/v2/config/webhooks/{ep['id']}", key=self.key,
                           body={"url": f"http://127.0.0.1:{self.recv.port}/webhook"})
        self.assertEqual(r.status, 200, r)
        d = self.delivery_of(ep["id"], "e2e-2")
        if d["state"] != "pending":  # retries may have run out meanwhile: retry by hand
            rr = self.d.request("POST", f"/api/v2/deliveries/{d['id']}/retry", key=self.key)
            self.assertEqual(rr.status, 202, rr)
        wait_until(lambda: self.recv.count() == 2, 20, "the second session to be stored")

    def delivery_of(self, ep_id, sid):
        r = self.d.request("GET", f"/api/v2/config/webhooks/{ep_id}/deliveries", key=self.key)
        for d in json.loads(r.body)["data"]["deliveries"]:
            if d["session_id"] == sid:
                return d
        return None

    def last_status(self, ep_id, sid):
        d = self.delivery_of(ep_id, sid)
        return d and d["last_http_status"]


if __name__ == "__main__":
    unittest.main(verbosity=2)
