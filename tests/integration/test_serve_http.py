"""The daemon at the HTTP level: health check, bounds (body, headers, idle time,
connections), request ids, and a clean stop on SIGTERM."""
import http.client
import json
import os
import signal
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import Daemon, create_partner, post_whole_body, read_until_closed  # noqa: E402
from tls_front import TlsFront  # noqa: E402

MIB = 1024 * 1024


def new_endpoint(test, d):
    """A new partner of daemon `d` with one endpoint: (its API key, the endpoint's id)."""
    _, key = create_partner(d.db)
    r = d.request("POST", "/api/v2/config/webhooks", key=key,
                  body={"label": "a", "url": "https://example.com/h"})
    test.assertEqual(r.status, 201, r)
    return key, r.json()["data"]["id"]


class Health(unittest.TestCase):
    def test_healthz_and_request_id(self):
        with Daemon() as d:
            self.assertNotEqual(d.port, 0)
            r = d.request("GET", "/healthz")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"success": True, "data": {"status": "ok"}})
            self.assertEqual(r.headers["content-type"], "application/json")
            rid = r.headers["x-request-id"]
            self.assertRegex(rid, r"^[0-9a-f]{8}-[0-9a-f]{6,}$")
            r2 = d.request("GET", "/healthz")
            self.assertNotEqual(r2.headers["x-request-id"], rid)
            rec = d.wait_log(lambda x: x.get("msg") == "request" and x.get("request_id") == rid)
            self.assertIsNotNone(rec, d.err.text())
            self.assertEqual((rec["method"], rec["path"], rec["status"]), ("GET", "/healthz", 200))
            self.assertIsInstance(rec["ms"], int)
            self.assertRegex(rec["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertEqual(rec["level"], "info")

    def test_single_thread(self):
        # One thread: MHD's own polling thread, no pool; it stops as cleanly.
        d = Daemon(["--threads", "1", "--max-connections", "8"]).start()
        try:
            for _ in range(3):
                self.assertEqual(d.request("GET", "/healthz").status, 200)
            _, took = d.stop()
            self.assertLess(took, 5)
            self.assertNotIn("warn", [x["level"] for x in d.log_records()
                                      if x["msg"] == "http"])
        finally:
            d.cleanup()

    def test_credentials_with_trailing_whitespace_pass(self):
        """RFC 9110 5.5: the whitespace after a field value is not part of it (libmicrohttpd
        strips only the leading), so a token with spaces or tabs after it still matches."""
        with Daemon() as d:
            r = d.request("POST", "/internal/v1/sessions", body=b"{}",
                          headers={"Authorization": f"Bearer {d.token} \t",
                                   "Content-Type": "application/json  "})
            self.assertEqual(r.status, 400, r)  # past the token and the content type: the body
            self.assertEqual(r.json()["error"]["code"], "VALIDATION_ERROR", r)
            r = d.request("POST", "/internal/v1/sessions", body=b"{}",
                          headers={"Authorization": f"Bearer {d.token}x",
                                   "Content-Type": "application/json"})
            self.assertEqual(r.status, 401, r)

    def test_unknown_route_is_json_404(self):
        with Daemon() as d:
            r = d.request("GET", "/nope?x=1")
            self.assertEqual(r.status, 404, r)
            self.assertFalse(r.json()["success"])
            self.assertEqual(r.headers["content-type"], "application/json")

    def test_an_encoded_nul_does_not_cut_the_path(self):
        """`%00` in the path or a query value must not end it where it decodes: the routes
        read C strings, so `DELETE /config/webhooks/ID%00/deliveries` was `DELETE
        /config/webhooks/ID`, and deleted the endpoint."""
        with Daemon() as d:
            key, ep = new_endpoint(self, d)
            # The DELETE is a path that takes GET only (the NUL stays in the id): 405.
            for method, path, status, code in (
                    ("DELETE", f"/api/v2/config/webhooks/{ep}%00/deliveries", 405,
                     "METHOD_NOT_ALLOWED"),
                    ("GET", f"/api/v2/config/webhooks/{ep}%00x", 404, "NOT_FOUND"),
                    ("GET", f"/api/v2/config/webhooks/{ep}%00/deliveries", 404, "NOT_FOUND")):
                r = d.request(method, path, key=key)
                self.assertEqual(r.status, status, f"{method} {path}: {r}")
                self.assertEqual(r.json()["error"]["code"], code, r)
            r = d.request("GET", "/api/v2/calls?limit=5%00x", key=key)
            self.assertEqual(r.status, 400, r)
            self.assertEqual(r.json()["error"]["code"], "VALIDATION_ERROR", r)
            r = d.request("GET", f"/api/v2/config/webhooks/{ep}", key=key)
            self.assertEqual(r.status, 200, r)  # still there
            # The access log shows the path as it came, not the part before the NUL.
            rec = d.wait_log(lambda x: x.get("msg") == "request" and x.get("method") == "DELETE")
            self.assertIsNotNone(rec, d.err.text())
            self.assertEqual(rec["path"], f"/api/v2/config/webhooks/{ep}%00/deliveries")

    def test_many_simultaneous_connections(self):
        # MHD's single-thread epoll mode stalls when 128*k connections arrive together; the
        # thread pool must answer every one of them.
        with Daemon() as d:
            n = 256
            socks = [d.raw_socket() for _ in range(n)]
            try:
                for s in socks:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                for s in socks:
                    data, _ = read_until_closed(s, 20)
                    self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:100])
            finally:
                for s in socks:
                    s.close()


class Methods(unittest.TestCase):
    """RFC 9110 15.5.6: a path that exists, asked with a method it does not take, is 405 (in
    the API's error envelope), not 404; a path that does not exist stays 404."""

    def assert_405(self, r, allow):
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.headers["content-type"], "application/json")
        err = r.json()
        self.assertIs(err["success"], False, r)
        self.assertEqual(err["error"]["code"], "METHOD_NOT_ALLOWED", r)
        self.assertTrue(err["error"]["message"].endswith(f"(allowed: {allow})"), r)
        self.assertEqual(r.headers.get("allow"), allow, r)

    def test_a_method_the_path_does_not_take_is_405(self):
        with Daemon() as d:
            key, ep = new_endpoint(self, d)
            for method, path, allow in (
                    ("DELETE", "/api/v2/config/webhooks", "GET, HEAD, POST"),
                    ("PUT", f"/api/v2/config/webhooks/{ep}", "GET, HEAD, PATCH, DELETE"),
                    ("GET", f"/api/v2/config/webhooks/{ep}/rotate-secret", "POST"),
                    ("GET", "/api/v2/config/webhook", "PUT"),
                    ("POST", "/api/v2/config", "GET, HEAD"),
                    ("DELETE", "/api/v2/calls/c1", "GET, HEAD"),
                    ("GET", "/api/v2/deliveries/d1/retry", "POST")):
                with self.subTest(method=method, path=path):
                    # A body in another type is still a wrong method first, not a 400.
                    self.assert_405(d.request(method, path, key=key, body=b"x",
                                              headers={"Content-Type": "text/plain"}), allow)
            self.assert_405(d.request("GET", "/internal/v1/sessions"), "POST")
            # HEAD wherever GET is: the GET's status and headers, no body.
            for path in ("/api/v2/config/webhooks", f"/api/v2/config/webhooks/{ep}"):
                with self.subTest(method="HEAD", path=path):
                    r = d.request("HEAD", path, key=key)
                    self.assertEqual((r.status, r.body), (200, b""), r)
                    self.assertEqual(r.headers.get("content-type"), "application/json", r)
            # The endpoint is still there: the DELETE above went to no route.
            self.assertEqual(d.request("GET", f"/api/v2/config/webhooks/{ep}",
                                       key=key).status, 200)
            # The API key is asked for first, as for every /api/v2 path.
            r = d.request("DELETE", "/api/v2/calls/c1")
            self.assertEqual(r.status, 401, r)
            self.assertNotIn("allow", r.headers)
            # Unknown paths, whatever the method, stay 404.
            for method, path in (("GET", "/api/v2/nowhere"), ("DELETE", "/api/v2/calls/c1/x"),
                                 ("POST", "/internal/v1/nowhere"), ("PUT", "/nope")):
                with self.subTest(method=method, path=path):
                    r = d.request(method, path, key=key)
                    self.assertEqual(r.status, 404, r)
                    self.assertEqual(r.json()["error"]["code"], "NOT_FOUND", r)
                    self.assertNotIn("allow", r.headers)

    def test_healthz_and_metrics_take_get_and_head_only(self):
        with Daemon() as d:
            for path in ("/healthz", "/metrics"):
                for method in ("GET", "HEAD"):
                    with self.subTest(method=method, path=path):
                        r = d.request(method, path)
                        self.assertEqual(r.status, 200, r)
                        if method == "HEAD":
                            self.assertEqual(r.body, b"")
                for method in ("POST", "PUT", "DELETE", "PATCH"):
                    with self.subTest(method=method, path=path):
                        self.assert_405(d.request(method, path, body=b"{}"), "GET, HEAD")


class Challenge(unittest.TestCase):
    """RFC 9110 11.6.1: a 401 must carry WWW-Authenticate. Both credentials are bearer
    tokens (RFC 6750 3), told apart by the realm; a refused token adds
    error="invalid_token". The body stays SPEC's UNAUTHORIZED envelope."""

    def assert_401(self, r, challenge):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json()["error"]["code"], "UNAUTHORIZED", r)
        self.assertEqual(r.headers.get("www-authenticate"), challenge, r)

    def test_every_401_carries_a_bearer_challenge(self):
        api = 'Bearer realm="vocohook-api"'
        ingest = 'Bearer realm="vocohook-ingest"'
        invalid = ', error="invalid_token"'
        with Daemon() as d:
            _, key = create_partner(d.db)
            self.assert_401(d.request("GET", "/api/v2/config"), api)
            self.assert_401(d.request("GET", "/api/v2/config",
                                      headers={"Authorization": "Basic dTpw"}), api)
            self.assert_401(d.request("GET", "/api/v2/config", key="rg_live_nope"),
                            api + invalid)
            # Answered on the head, before the body is read (vh_api_admit), as well.
            self.assert_401(d.request("POST", "/api/v2/config/webhooks", key="rg_live_nope",
                                      body={"label": "a", "url": "https://example.com/h"}),
                            api + invalid)
            self.assert_401(d.request("POST", "/internal/v1/sessions", body=b"{}",
                                      headers={"Content-Type": "application/json"}), ingest)
            self.assert_401(d.request("POST", "/internal/v1/sessions", body=b"{}",
                                      key=d.token + "x",
                                      headers={"Content-Type": "application/json"}),
                            ingest + invalid)
            # Answers that are not 401 carry none.
            for r in (d.request("GET", "/api/v2/config", key=key), d.request("GET", "/healthz"),
                      d.request("GET", "/api/v2/nowhere", key=key)):
                self.assertNotIn("www-authenticate", r.headers, r)
        with Daemon(ingest_token=None) as d:
            # No ingest token configured: no credentials can pass, but the 401 still says how.
            self.assert_401(d.request("POST", "/internal/v1/sessions", body=b"{}",
                                      key="itok_0123456789abcdef",
                                      headers={"Content-Type": "application/json"}), ingest)


class Bounds(unittest.TestCase):
    def test_body_over_one_mib_is_413(self):
        with Daemon() as d:
            body = b"x" * (MIB + 1)
            r = d.request("POST", "/internal/v1/sessions", body=body, key=d.token,
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 413, r)
            self.assertEqual(r.json()["error"]["code"], "PAYLOAD_TOO_LARGE")
            # Exactly at the bound the body is read and judged on its content instead.
            r = d.request("POST", "/internal/v1/sessions", body=b" " * MIB, key=d.token,
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, r)
            # And the server is still there.
            self.assertEqual(d.request("GET", "/healthz").status, 200)

    def test_no_body_is_read_before_the_credentials_pass(self):
        # Found in review: the whole body (up to 1 MiB) was buffered before the token or the
        # API key was looked at, so a client without credentials could hold that much on
        # each of its connections. The head alone now gets the 401, the body never sent.
        with Daemon() as d:
            cases = [
                ("/internal/v1/sessions", None, "Authorization: Bearer"),
                ("/internal/v1/sessions", "itok_wrong_0123456789abcdef", "invalid ingest token"),
                ("/api/v2/config/webhooks", "vk_wrong_0123456789abcdef", "invalid or revoked"),
            ]
            for path, key, message in cases:
                sock = d.raw_socket()
                auth = f"Authorization: Bearer {key}\r\n" if key else ""
                sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}"
                              f"Content-Type: application/json\r\nContent-Length: {MIB}\r\n\r\n")
                             .encode())
                data, _ = read_until_closed(sock, 10)  # the answer, then the server closes
                sock.close()
                head, _, body = data.partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 401 "), (path, data[:200]))
                self.assertIn(message, json.loads(body)["error"]["message"], path)
            # With credentials, the body is read and judged as before.
            r = d.request("POST", "/internal/v1/sessions", body=b" " * 16, key=d.token,
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, r)
            self.assertEqual(d.request("GET", "/healthz").status, 200)

    def test_ambiguous_body_framing_is_refused_and_closed(self):
        """RFC 9112 §6.3: Content-Length values that differ are an unrecoverable framing
        error (400, then close), and Content-Length with Transfer-Encoding must not leave the
        connection open. libmicrohttpd took the first Content-Length and read the rest as a
        next request: what a proxy that took the other one forwarded as one request's body
        was answered here as a request of its own."""
        with Daemon() as d:
            _, key = create_partner(d.db)
            smuggled = (f"GET /api/v2/config HTTP/1.1\r\nHost: x\r\n"
                        f"Authorization: Bearer {key}\r\n\r\n").encode()
            body = b"{}" + smuggled
            head = (f"POST /api/v2/config/webhooks HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n")
            for framing, payload in (
                    (f"Content-Length: 2\r\nContent-Length: {len(body)}\r\n", body),
                    (f"Content-Length: {len(body)}\r\nContent-Length: 2\r\n", body),
                    ("Content-Length: 7\r\nTransfer-Encoding: chunked\r\n",
                     b"2\r\n{}\r\n0\r\n\r\n" + smuggled)):
                sock = d.raw_socket()
                sock.sendall((head + framing + "\r\n").encode() + payload)
                data, _ = read_until_closed(sock, 10)  # one answer, then the server closes
                sock.close()
                self.assertEqual(data.count(b"HTTP/1.1 "), 1, (framing, data))
                answer, _, rest = data.partition(b"\r\n\r\n")
                self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), (framing, data[:300]))
                self.assertIn(b"Connection: close", answer)
                self.assertEqual(json.loads(rest)["error"]["code"], "VALIDATION_ERROR")
            # The same length twice is one length (RFC 9112 §6.3 allows it).
            sock = d.raw_socket()
            sock.sendall((head + "Content-Length: 2\r\nContent-Length: 2\r\n"
                          "Connection: close\r\n\r\n{}").encode())
            data, _ = read_until_closed(sock, 10)
            sock.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:300])
            self.assertIn(b"label: missing", data)
            self.assertEqual(d.request("GET", "/healthz").status, 200)

    def test_chunked_body_over_the_bound_is_413(self):
        with Daemon(["--body-max", "1KiB"]) as d:
            c = d.connect()
            c.putrequest("POST", "/internal/v1/sessions")
            c.putheader("Authorization", f"Bearer {d.token}")
            c.putheader("Content-Type", "application/json")
            c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            for _ in range(4):
                c.send(b"200\r\n" + b"y" * 0x200 + b"\r\n")
            c.send(b"0\r\n\r\n")
            r = c.getresponse()
            self.assertEqual(r.status, 413)
            r.read()
            c.close()

    def test_oversized_headers_are_refused(self):
        with Daemon() as d:
            r = d.request("GET", "/healthz", headers={"X-Big": "a" * (64 * 1024)})
            self.assertIn(r.status, (413, 431), r)
            self.assertEqual(d.request("GET", "/healthz").status, 200)
            # The per-connection pool is 16 KiB (server.c): 8 KiB of headers still fit.
            r = d.request("GET", "/healthz", headers={"X-Big": "a" * 8192})
            self.assertEqual(r.status, 200, r)

    def test_idle_connection_is_closed_after_the_timeout(self):
        with Daemon(["--conn-timeout", "1s"]) as d:
            # A slow loris: the request line and part of the headers, then nothing.
            s = d.raw_socket()
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            data, took = read_until_closed(s, 15)
            s.close()
            self.assertNotIn(b"200 OK", data)
            self.assertGreaterEqual(took, 0.5)
            self.assertLess(took, 10)
            # A keep-alive connection that went quiet after a request is closed too.
            s = d.raw_socket()
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            data, took = read_until_closed(s, 15)
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:100])
            self.assertLess(took, 10)


class EarlyAnswer(unittest.TestCase):
    """A request refused on its head (a bad credential, a Content-Length over 16 times the
    bound) is answered before its body is read, and the connection closed. A client that
    sends its whole body before reading (http.client, and nginx in front of the daemon) must
    still get that answer: before, the daemon closed with the body unread, the kernel reset
    the connection, the client's send failed (EPIPE or ECONNRESET) and nginx answered 502."""

    # (path, credential, declared body length, status, error code, part of the message)
    CASES = [
        ("/api/v2/config/webhooks", "vk_wrong_0123456789abcdef", 16 * MIB, 401, "UNAUTHORIZED",
         "invalid or revoked"),
        ("/internal/v1/sessions", "itok_wrong_0123456789abcdef", 16 * MIB, 401,
         "UNAUTHORIZED", "invalid ingest token"),
        ("/internal/v1/sessions", None, 32 * MIB, 413, "PAYLOAD_TOO_LARGE", ""),
    ]

    def post_each(self, d, connect):
        for path, key, size, status, code, message in self.CASES:
            with self.subTest(path=path, status=status):
                headers = {"Authorization": f"Bearer {key or d.token}",
                           "Content-Type": "application/json"}
                r, closes = post_whole_body(connect(), path, headers, b" " * size)
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.json()["error"]["code"], code, r)
                self.assertIn(message, r.json()["error"]["message"], r)
                yield r, closes

    def test_a_client_that_sends_the_whole_body_gets_the_answer(self):
        with Daemon() as d:
            for r, closes in self.post_each(d, d.connect):
                self.assertEqual(r.headers["connection"], "close", r.headers)
                self.assertTrue(closes)
            self.assertEqual(d.request("GET", "/healthz").status, 200)

    def test_the_answer_gets_through_a_tls_terminator(self):
        # nginx reads the whole body first (its default), or streams it (buffering off).
        for buffering in ("on", "off"):
            with self.subTest(buffering=buffering), Daemon() as d, \
                    TlsFront(d.port, buffering) as front:
                def connect():
                    return http.client.HTTPSConnection("127.0.0.1", front.port, timeout=30,
                                                       context=front.context())
                for _ in self.post_each(d, connect):
                    pass
                r, _ = post_whole_body(connect(), "/internal/v1/sessions",
                                       {"Authorization": f"Bearer {d.token}",
                                        "Content-Type": "application/json"}, b" " * 16)
                self.assertEqual(r.status, 400, r)  # with credentials: read, and judged


class Stop(unittest.TestCase):
    def test_sigterm_while_idle_exits_zero_quickly(self):
        d = Daemon().start()
        try:
            _, took = d.stop(signal.SIGTERM)
            self.assertLess(took, 5)
            self.assertIsNotNone(d.wait_log(lambda x: x.get("msg") == "stopped", 1),
                                 d.err.text())
        finally:
            d.cleanup()

    def test_sigint_exits_zero(self):
        d = Daemon().start()
        try:
            d.stop(signal.SIGINT)
        finally:
            d.cleanup()

    def test_sighup_stops_as_sigterm_does(self):
        # There is nothing to reload (settings are read at start): a hangup stops the
        # daemon cleanly, as SIGTERM does, rather than killing it with attempts unrecorded.
        d = Daemon().start()
        try:
            d.stop(signal.SIGHUP)
            stopping = [x for x in d.log_records() if x["msg"] == "stopping"]
            self.assertEqual([x["signal"] for x in stopping], ["SIGHUP"], d.err.text())
            self.assertEqual(d.log_records()[-1]["msg"], "stopped")
        finally:
            d.cleanup()

    def test_sighup_ignored_by_the_parent_stays_ignored(self):
        # Under nohup (SIGHUP ignored at exec), a hangup changes nothing.
        old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            d = Daemon().start()
        finally:
            signal.signal(signal.SIGHUP, old)
        try:
            d.proc.send_signal(signal.SIGHUP)
            d.stop(signal.SIGTERM)  # had the hangup counted, it would be the signal named
            stopping = [x for x in d.log_records() if x["msg"] == "stopping"]
            self.assertEqual([x["signal"] for x in stopping], ["SIGTERM"], d.err.text())
        finally:
            d.cleanup()

    def test_sigterm_with_an_open_keepalive_connection(self):
        # An idle keep-alive connection must not hold the stop up until its timeout (30s).
        d = Daemon().start()
        try:
            c = d.connect()
            self.assertEqual(d.request("GET", "/healthz", conn=c).status, 200)
            _, took = d.stop(signal.SIGTERM)
            self.assertLess(took, 5)
            c.close()
        finally:
            d.cleanup()

    def test_sigterm_stops_accepting(self):
        d = Daemon().start()
        try:
            host, port = d.host, d.port
            d.stop(signal.SIGTERM)
            with self.assertRaises(OSError):
                socket.create_connection((host, port), timeout=5).close()
        finally:
            d.cleanup()

    def test_requests_in_progress_finish(self):
        # A request whose body is still on its way when SIGTERM comes gets its answer.
        d = Daemon().start()
        try:
            s = d.raw_socket()
            body = b'{"partner_id": "p"}'
            s.sendall(b"POST /internal/v1/sessions HTTP/1.1\r\nHost: t\r\n"
                      b"Authorization: Bearer " + d.token.encode() + b"\r\n"
                      b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            # "100 Continue" means the daemon has the headers: the request is in progress.
            s.settimeout(10)
            interim = b""
            while not interim.endswith(b"\r\n\r\n"):
                chunk = s.recv(1)
                self.assertTrue(chunk, interim)
                interim += chunk
            self.assertTrue(interim.startswith(b"HTTP/1.1 100 "), interim)
            d.proc.send_signal(signal.SIGTERM)
            # The daemon has stopped accepting and waits for the request in progress.
            rec = d.wait_log(lambda x: x.get("msg") == "draining")
            self.assertIsNotNone(rec, d.err.text())
            self.assertEqual(rec["in_flight"], 1)
            s.sendall(body)
            data, _ = read_until_closed(s, 10)
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:200])
            self.assertIn(b"Connection: close", data)
            self.assertEqual(d.wait_exit(), 0, d.err.text())
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
