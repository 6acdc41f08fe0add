"""An endpoint changed through the API takes back the attempts this node has queued for it:
a slow endpoint holds its 8 slots while the rest of its deliveries wait in the engine's
queue with the URL and secret they were claimed with. Once it is disabled, deleted or
moved, none of those waiting reach the old URL; the deliveries still wanted go to the
new one."""
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
from test_deliver import verify  # noqa: E402


SESSIONS = 40
SLOTS = 8  # the engine's attempts at once per endpoint (VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT)


class EndpointChange(unittest.TestCase):
    def setUp(self):
        self.release = threading.Event()
        self.receivers = []
        self.d = Daemon(args=["--allow-http", "--allow-private-networks"])
        self.pid, self.key = create_partner(self.d.db)
        self.d.start()

    def tearDown(self):
        self.release.set()
        for r in self.receivers:
            r.close()
        self.d.cleanup()

    def receiver(self, behaviour=lambda n: 204):
        r = Receiver(behaviour)
        self.receivers.append(r)
        return r

    def held_receiver(self):
        """A receiver that holds every answer until the test releases them."""
        return self.receiver(lambda n: 204 if self.release.wait(30) else 500)

    def endpoint(self, url):
        r = self.d.request("POST", "/api/v2/config/webhooks", key=self.key,
                           body={"label": "slow", "url": url})
        self.assertEqual(r.status, 201, r)
        self.secret = json.loads(r.body)["data"]["secret"]
        return json.loads(r.body)["data"]["id"]

    def fill_queue(self, held):
        """Ingests SESSIONS sessions; returns once SLOTS requests are held and the rest wait."""
        for i in range(SESSIONS):
            session = seed_session()
            session["session_id"] = f"change-{i}"
            r = self.d.request("POST", "/internal/v1/sessions",
                               headers={"Authorization": f"Bearer {self.d.token}"},
                               body={"partner_id": self.pid, "session": session})
            self.assertEqual(r.status, 202, r)
        self.assertEqual(held.wait_count(SLOTS, 15), SLOTS)
        self.assertEqual(held.wait_count(SLOTS + 1, 0.5), SLOTS)  # the cap holds the rest

    def delivery_rows(self):
        path = self.d.db.split(":", 1)[1]
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute("SELECT state FROM deliveries").fetchall()
        finally:
            con.close()

    def wait_state(self, state, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.delivery_rows()
            if len(rows) == SESSIONS and all(r[0] == state for r in rows):
                return
            time.sleep(0.05)  # polling a file another process writes: no event to await
        self.fail(f"deliveries never all reached {state}: {self.delivery_rows()}")

    def check_only_held_ones_sent(self, held):
        self.release.set()
        # The held attempts finish; nothing that waited in the queue follows them.
        self.assertEqual(held.wait_count(SLOTS + 1, 3), SLOTS)
        self.wait_state("canceled", 15)
        self.assertEqual(len(held.requests), SLOTS)

    def test_disabled_endpoint_gets_none_of_its_queued_attempts(self):
        held = self.held_receiver()
        ep_id = self.endpoint(held.url)
        self.fill_queue(held)
        r = self.d.request("PATCH", f"/api/v2/config/webhooks/{ep_id}", key=self.key,
                           body={"enabled": False})
        self.assertEqual(r.status, 200, r)
        self.check_only_held_ones_sent(held)

    def test_deleted_endpoint_gets_none_of_its_queued_attempts(self):
        held = self.held_receiver()
        ep_id = self.endpoint(held.url)
        self.fill_queue(held)
        r = self.d.request("DELETE", f"/api/v2/config/webhooks/{ep_id}", key=self.key)
        self.assertEqual(r.status, 200, r)
        self.check_only_held_ones_sent(held)

    def test_moved_endpoint_gets_its_queued_attempts_at_the_new_url(self):
        held = self.held_receiver()
        new = self.receiver()
        ep_id = self.endpoint(held.url)
        self.fill_queue(held)
        r = self.d.request("PATCH", f"/api/v2/config/webhooks/{ep_id}", key=self.key,
                           body={"url": new.url})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(held.requests), SLOTS)
        # The held attempts keep the endpoint's slots (its fairness key is its id) until
        # they end; then the waiting deliveries go to the new URL, none to the old.
        self.release.set()
        self.assertEqual(new.wait_count(SESSIONS - SLOTS, 15), SESSIONS - SLOTS)
        self.wait_state("succeeded", 15)
        self.assertEqual(held.wait_count(SLOTS + 1, 1), SLOTS)
        self.assertEqual(len(new.requests), SESSIONS - SLOTS)
        ids = {h["x-webhook-id"] for _, h, _ in held.requests + new.requests}
        self.assertEqual(len(ids), SESSIONS)  # each delivery made once

    def test_rotated_secret_signs_the_queued_attempts(self):
        held = self.held_receiver()
        ep_id = self.endpoint(held.url)
        old = self.secret
        self.fill_queue(held)
        r = self.d.request("POST", f"/api/v2/config/webhooks/{ep_id}/rotate-secret",
                           key=self.key)
        self.assertEqual(r.status, 200, r)
        new = json.loads(r.body)["data"]["secret"]
        self.release.set()
        self.assertEqual(held.wait_count(SESSIONS, 15), SESSIONS)
        self.wait_state("succeeded", 15)
        signed = [verify(new, h, b) for _, h, b in held.requests]
        self.assertEqual(signed, [False] * SLOTS + [True] * (SESSIONS - SLOTS))
        self.assertTrue(all(verify(old, h, b) for _, h, b in held.requests[:SLOTS]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
