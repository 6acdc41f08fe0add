"""HTTPS is the normal case: 2 000 deliveries to a receiver whose certificate comes from a
CA made by this test (trusted through --ca-file), half of them on fresh connections (the
receiver closes after every other response). All succeed and verify; without the CA, TLS
fails and the attempt says so."""
import hashlib
import hmac
import http.client
import http.server
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import Daemon, create_partner, seed_session  # noqa: E402
from tls_front import make_ca  # noqa: E402

SESSIONS = 2000


class TlsReceiver:
    """HTTPS on 127.0.0.1; closes the connection after every other response."""

    def __init__(self, cert, key):
        self.bodies, self.headers = [], []
        self.lock = threading.Condition()
        self.connections = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with outer.lock:
                    outer.connections += 1

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.bodies.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    n = len(outer.bodies)
                    outer.lock.notify_all()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                if n % 2 == 0:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.request_queue_size = 128
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.bodies)

    def wait_count(self, n, timeout):
        """Waits until `n` requests arrived (or the timeout); returns the count."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.bodies) < n and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())
            return len(self.bodies)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Https(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="vh-tls-")
        self.ca, cert, key = make_ca(self.tmp)
        self.recv = TlsReceiver(cert, key)
        self.d = None

    def tearDown(self):
        self.recv.close()
        if self.d:
            self.d.cleanup()
        subprocess.run(["rm", "-rf", self.tmp])

    def start(self, *args):
        self.d = Daemon(args=["--allow-private-networks", *args])
        self.pid, self.key = create_partner(self.d.db)
        self.d.start()
        r = self.d.request("POST", "/api/v2/config/webhooks", key=self.key,
                           body={"label": "tls", "url": self.recv.url})
        self.assertEqual(r.status, 201, r)
        return json.loads(r.body)["data"]

    def ingest_many(self, n):
        c = http.client.HTTPConnection(self.d.host, self.d.port, timeout=30)
        base = seed_session()
        for i in range(n):
            s = dict(base, session_id=f"tls-{i}", call=dict(base["call"], call_id=f"tc-{i}"))
            c.request("POST", "/internal/v1/sessions",
                      body=json.dumps({"partner_id": self.pid, "session": s}),
                      headers={"Authorization": f"Bearer {self.d.token}",
                               "Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 202)
        c.close()

    def test_two_thousand_deliveries_half_on_fresh_connections(self):
        ep = self.start("--ca-file", self.ca)
        self.ingest_many(SESSIONS)
        self.assertEqual(self.recv.wait_count(SESSIONS, 90), SESSIONS)
        # At least half the requests came on a fresh connection (it closes every other one).
        self.assertGreaterEqual(self.recv.connections, SESSIONS // 2)
        for h, b in zip(self.recv.headers[:50], self.recv.bodies[:50]):
            want = "sha256=" + hmac.new(ep["secret"].encode(),
                                        h["x-webhook-timestamp"].encode() + b"." + b,
                                        hashlib.sha256).hexdigest()
            self.assertEqual(h["x-webhook-signature"], want)
        self.assertEqual(len({json.loads(b)["data"]["session_id"] for b in self.recv.bodies}),
                         SESSIONS)

    def test_untrusted_certificate_is_a_tls_failure(self):
        ep = self.start()  # no --ca-file: the test CA is not trusted
        self.ingest_many(1)
        deadline = time.monotonic() + 20
        last = None
        while time.monotonic() < deadline:
            r = self.d.request("GET", f"/api/v2/config/webhooks/{ep['id']}/deliveries",
                               key=self.key)
            ds = json.loads(r.body)["data"]["deliveries"]
            last = ds[0]["last_error"] if ds else None
            if last:
                break
            time.sleep(0.1)
        self.assertEqual(last, "tls")
        self.assertEqual(self.recv.count(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
