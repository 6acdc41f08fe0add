"""The connect-time address check through the running daemon: without
--allow-private-networks, every loopback/private form of a destination is refused when the
connection is made, recorded as `blocked_destination`, and nothing ever connects."""
import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import Daemon, create_partner, seed_session  # noqa: E402


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self):
        self.closed = True
        self.sock.close()


class Ssrf(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(args=["--allow-http"])  # http allowed, private networks NOT
        self.listener = Listener()
        self.d.start()

    def tearDown(self):
        self.listener.close()
        self.d.cleanup()

    def test_loopback_forms_are_refused_at_connect_time(self):
        p = self.listener.port
        hosts = ["127.0.0.1", "localhost", "127.1", "127.0.0.2", "0x7f000001", "2130706433",
                 "017700000001", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0"]
        endpoints = {}  # endpoint id -> (API key, host)
        for start in range(0, len(hosts), 5):  # five endpoints per partner at most
            pid, key = create_partner(self.d.db, f"p{start}")
            for i, host in enumerate(hosts[start:start + 5]):
                r = self.d.request("POST", "/api/v2/config/webhooks", key=key,
                                   body={"label": f"h{i}", "url": f"http://{host}:{p}/hook"})
                self.assertEqual(r.status, 201, (host, r))
                endpoints[json.loads(r.body)["data"]["id"]] = (key, host)
            session = seed_session()
            session["session_id"] = f"ssrf-{start}"
            r = self.d.request("POST", "/internal/v1/sessions",
                               headers={"Authorization": f"Bearer {self.d.token}"},
                               body={"partner_id": pid, "session": session})
            self.assertEqual(r.status, 202, r)

        deadline = time.monotonic() + 20
        pending = dict(endpoints)
        while pending and time.monotonic() < deadline:
            for ep_id, (key, host) in list(pending.items()):
                r = self.d.request("GET", f"/api/v2/config/webhooks/{ep_id}/deliveries",
                                   key=key)
                ds = json.loads(r.body)["data"]["deliveries"]
                if ds and ds[0]["last_error"]:
                    self.assertEqual(ds[0]["last_error"], "blocked_destination", host)
                    self.assertIsNone(ds[0]["last_http_status"], host)
                    del pending[ep_id]
            if pending:
                time.sleep(0.1)  # the daemon records asynchronously; poll its API
        self.assertEqual(pending, {}, "no attempt recorded for these")
        self.assertEqual(self.listener.accepted, 0, "a blocked destination was connected to")


    def test_the_partner_is_not_told_the_private_address(self):
        """A partner names the host; the address it resolved to on our side is ours. An
        internal name (split-horizon DNS) must not have its address shown to the partner in
        the delivery history: the attempt says it was refused, the address goes to our log."""
        pid, key = create_partner(self.d.db, "names")
        r = self.d.request("POST", "/api/v2/config/webhooks", key=key,
                           body={"label": "internal",
                                 "url": f"http://localhost:{self.listener.port}/hook"})
        self.assertEqual(r.status, 201, r)
        ep_id = json.loads(r.body)["data"]["id"]
        r = self.d.request("POST", "/internal/v1/sessions",
                           headers={"Authorization": f"Bearer {self.d.token}"},
                           body={"partner_id": pid, "session": seed_session()})
        self.assertEqual(r.status, 202, r)

        deadline = time.monotonic() + 20
        attempt = None
        while attempt is None and time.monotonic() < deadline:
            r = self.d.request("GET", f"/api/v2/config/webhooks/{ep_id}/deliveries", key=key)
            ds = json.loads(r.body)["data"]["deliveries"]
            if ds and ds[0]["last_error"]:
                r = self.d.request("GET", f"/api/v2/deliveries/{ds[0]['id']}", key=key)
                attempt = json.loads(r.body)["data"]["attempt_history"][0]
            else:
                time.sleep(0.1)
        self.assertIsNotNone(attempt, "no attempt recorded")
        self.assertEqual(attempt["error_class"], "blocked_destination")
        self.assertIn("not a public address", attempt["error"])
        for addr in ("127.0.0.1", "::1"):
            self.assertNotIn(addr, attempt["error"])
        self.assertTrue(self.d.wait_log(
            lambda rec: rec.get("msg") == "blocked destination"
            and rec.get("address") in ("127.0.0.1", "::1")), "the address is not in the log")
        self.assertEqual(self.listener.accepted, 0)

if __name__ == "__main__":
    unittest.main(verbosity=2)
