"""Hostile HTTPS endpoints, over real TLS on 127.0.0.1 with a CA made by the test.

Each probe is one endpoint that misbehaves in TLS or in what it sends over TLS, with a
short timeout. The attempt must be recorded with the right outcome within its timeout
(loosely: timeout + slack), and another partner's healthy HTTPS endpoint, ingested to
while the hostile one holds its attempt, must still be delivered at once: the engine
thread serves every endpoint, so nothing a hostile one sends may hold it.
"""
import collections
import json
import os
import re
import select
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import Daemon, create_partner, seed_session  # noqa: E402
from tls_front import issue, make_ca, new_ca, sign  # noqa: E402

TIMEOUT_MS = 1500  # the hostile endpoints' attempt timeout
SLACK = 3.0        # seconds allowed past it, loosely (a busy or sanitizer machine)
HEALTHY_MAX = 1.0  # seconds from ingest to the healthy endpoint's delivery


def make_certs(d):
    """The CA and server certificate of make_ca, plus: a certificate from that CA for
    another name (localhost), one for 127.0.0.1 from a second, untrusted CA, and a chain
    file far over what a client takes (about 200 KiB of certificates)."""
    ca, cert, key = make_ca(d)
    issue(d, "wrong", "localhost", "DNS:localhost")
    new_ca(d, "other-ca", "vocohook other CA")
    sign(d, "srv", "other-ca", "other.pem")
    with open(cert) as f:
        leaf = f.read()
    with open(ca) as f:
        ca_pem = f.read()
    with open(os.path.join(d, "huge.pem"), "w") as f:
        f.write(leaf + ca_pem * (200 * 1024 // len(ca_pem)))
    return {"ca": ca, "cert": cert, "key": key,
            "wrong": (os.path.join(d, "wrong.pem"), os.path.join(d, "wrong.key")),
            "other": (os.path.join(d, "other.pem"), key),
            "huge": (os.path.join(d, "huge.pem"), key)}


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def read_request(s):
    """One whole request (head and Content-Length body) from `s`; its head, or None at EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            return None
        rest += d
    return head


def raw_of(s):
    """A second socket object on the TLS socket's descriptor, to write bytes under TLS."""
    return socket.socket(fileno=os.dup(s.fileno()))


class Hostile:
    """A TCP listener on 127.0.0.1; each connection runs `behave(self, sock)` in a thread.
    Events are counted (`bump`) for tests to await (`wait`): "connections" accepted,
    "requests" read whole, and "hits", the moment a behaviour starts misbehaving."""

    def __init__(self, behave, ctx=None):
        self.behave, self.ctx = behave, ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.cond = threading.Condition()
        self.conns, self.counts = [], collections.Counter()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                if self.closed:
                    c.close()
                    return
                self.conns.append(c)
                self.counts["connections"] += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(30)
        try:
            self.behave(self, c)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            c.close()

    def tls(self, c):
        """The TLS side of connection `c`, handshake done. It takes over `c`'s descriptor
        (`c` is detached): use it from then on, for plain TCP calls too."""
        s = self.ctx.wrap_socket(c, server_side=True)
        with self.cond:
            self.conns.append(s)
        return s

    def request(self, s):
        head = read_request(s)
        if head is not None:
            self.bump("requests")
        return head

    def bump(self, what):
        with self.cond:
            self.counts[what] += 1
            self.cond.notify_all()

    def reached(self):
        self.bump("hits")

    def wait(self, what, n, timeout):
        """The count of `what` once it is `n`, or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.counts[what] < n and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            return self.counts[what]

    def close(self):
        with self.cond:
            self.closed = True
            conns = list(self.conns)
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()  # a TLS socket took over its descriptor: this is its only close


NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def ok_behaviour(srv, c):
    """A well-behaved HTTPS receiver: 204 to every request, keep-alive."""
    s = srv.tls(c)
    while srv.request(s) is not None:
        s.sendall(NO_CONTENT)


def flood(first, unit, record=None):
    """After the request: `first`, then `unit` again and again until the engine closes; in
    records of 256 KiB (16 KiB each, as TLS cuts them), or of `record` bytes."""
    def behave(srv, c):
        s = srv.tls(c)
        srv.request(s)
        s.sendall(first)
        srv.reached()
        chunk = unit * max(1, 256 * 1024 // len(unit))
        while True:
            if record:
                for i in range(0, len(chunk), record):
                    s.sendall(chunk[i:i + record])
            else:
                s.sendall(chunk)
    return behave


class BioTls:
    """Server-side TLS over memory BIOs on the TCP socket `c`, handshake done: records can
    be made first and sent later, many in one write. `recv` reads application data."""

    def __init__(self, srv, c):
        self.c, self.into, self.out = c, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = srv.ctx.wrap_bio(self.into, self.out, server_side=True)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.feed()
        self.flush()

    def flush(self):
        self.c.sendall(self.out.read())

    def feed(self):
        data = self.c.recv(65536)
        if not data:
            raise OSError("the peer closed")
        self.into.write(data)

    def recv(self, n):
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                self.flush()
                self.feed()

    def records(self, data, size):
        """`data` as TLS records of `size` bytes each, encrypted, not sent."""
        for i in range(0, len(data), size):
            self.tls.write(data[i:i + size])
        return self.out.read()


def records_at_once(data, size=1, then="hold"):
    """After the request: `data` in records of `size` bytes, all made first, then sent in
    one write, so the engine always has the next record waiting; then the connection is
    held open ("hold") or closed ("cut")."""
    def behave(srv, c):
        t = BioTls(srv, c)
        srv.request(t)
        wire = t.records(data, size)
        srv.reached()
        c.sendall(wire)
        if then == "cut":
            c.shutdown(socket.SHUT_RDWR)
        else:
            c.recv(1)
    return behave


def answer_then(tail):
    """After the request: `tail(srv, s)`, with the TLS socket."""
    def behave(srv, c):
        s = srv.tls(c)
        srv.request(s)
        tail(srv, s)
    return behave


def cut(srv, s):
    """Closes the TCP connection without close_notify (SSLSocket.shutdown is TCP's)."""
    srv.reached()
    s.shutdown(socket.SHUT_RDWR)


def hold(srv, s):
    """Leaves the connection open and silent until the engine closes it."""
    srv.reached()
    with raw_of(s) as raw:
        raw.recv(1)


def handshake_unanswered(srv, c):
    """Takes the ClientHello and answers nothing."""
    c.recv(65536)
    srv.reached()
    c.recv(1)


def handshake_trickled(srv, c):
    """A real server flight, one byte every 20 ms (about a minute for all of it)."""
    into, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = srv.ctx.wrap_bio(into, out, server_side=True)
    while not out.pending:
        data = c.recv(65536)
        if not data:
            return
        into.write(data)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
    flight = out.read()
    srv.reached()
    for i in range(len(flight)):
        c.sendall(flight[i:i + 1])
        time.sleep(0.02)  # the trickle itself, not a wait for a condition


def plaintext(srv, c):
    """A plain HTTP server on the https:// port."""
    c.recv(65536)
    srv.reached()
    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def verified_only(srv, c):
    """Answers 200 to a request: only a client that accepted the certificate gets there."""
    srv.reached()
    s = srv.tls(c)
    srv.request(s)
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


class HostileTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vh-hostile-tls-")
        cls.certs = make_certs(cls.tmp)
        cls.good = server_context(cls.certs["cert"], cls.certs["key"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.servers = []
        # Debug logs: each attempt's record is what finished() awaits. The polls of the API
        # are the tests', not a client's: no rate limit.
        self.d = Daemon(args=["--allow-private-networks", "--ca-file", self.certs["ca"],
                              "--retry-schedule", "0", "--log-level", "debug",
                              "--rate-limit", "off"])
        self.attempts_logged = 0
        self.bad_pid, self.bad_key = create_partner(self.d.db, "hostile")
        self.ok_pid, self.ok_key = create_partner(self.d.db, "healthy")
        self.d.start()

    def tearDown(self):
        for s in self.servers:
            s.close()
        self.d.cleanup()

    def serve(self, behave, ctx=None):
        srv = Hostile(behave, ctx or self.good)
        self.servers.append(srv)
        return srv

    def endpoint(self, key, url, timeout_ms=TIMEOUT_MS):
        r = self.d.request("POST", "/api/v2/config/webhooks", key=key,
                           body={"label": "e", "url": url, "timeout_ms": timeout_ms})
        self.assertEqual(r.status, 201, r)
        return json.loads(r.body)["data"]["id"]

    def ingest(self, pid, n):
        s = seed_session()
        s["session_id"] = f"hostile-{n}"
        s["call"]["call_id"] = f"hostile-c-{n}"
        r = self.d.ingest(pid, s)
        self.assertEqual(r.status, 202, r)

    def next_attempt(self, timeout):
        """Awaits the engine's log record of an attempt not awaited before (the store
        records the attempt right after it), for at most `timeout` seconds."""
        count = [0]

        def is_next(line):
            count[0] += '"msg":"attempt"' in line
            return count[0] > self.attempts_logged

        if self.d.err.wait_for(is_next, timeout) is not None:
            self.attempts_logged += 1

    def finished(self, key, ep, n=1, timeout=TIMEOUT_MS / 1000 + SLACK + 5):
        """The attempt history of each of the endpoint's first `n` deliveries, once every one
        of them has finished (one attempt each: the retry schedule is "0")."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.d.request("GET", f"/api/v2/config/webhooks/{ep}/deliveries", key=key)
            self.assertEqual(r.status, 200, r)
            ds = json.loads(r.body)["data"]["deliveries"]
            if len(ds) >= n and all(d["state"] in ("succeeded", "abandoned") for d in ds):
                break
            if time.monotonic() > deadline:
                self.fail(f"deliveries not finished in {timeout} s: {ds}")
            self.next_attempt(0.1)
        out = []
        for d in sorted(ds, key=lambda d: d["created_at"]):
            r = self.d.request("GET", f"/api/v2/deliveries/{d['id']}", key=key)
            out.append(json.loads(r.body)["data"]["attempt_history"])
        return out

    def probe(self, behave, ctx=None, timeout_ms=TIMEOUT_MS, wait="hits"):
        """Delivers one event to a hostile endpoint running `behave`; once it misbehaves
        (`wait` reached), one to the healthy endpoint of another partner, which must arrive
        within HEALTHY_MAX. Returns the hostile attempt and the seconds from its ingest to
        its record."""
        bad = self.serve(behave, ctx)
        ok = self.serve(ok_behaviour)
        bad_ep = self.endpoint(self.bad_key, bad.url, timeout_ms)
        self.endpoint(self.ok_key, ok.url)
        t0 = time.monotonic()
        self.ingest(self.bad_pid, 1)
        self.assertGreaterEqual(bad.wait(wait, 1, 10), 1, "the hostile endpoint was never reached")
        t1 = time.monotonic()
        self.ingest(self.ok_pid, 2)
        self.assertEqual(ok.wait("requests", 1, 10), 1)
        self.assertLess(time.monotonic() - t1, HEALTHY_MAX,
                        "the healthy endpoint waited on the hostile one")
        (history,) = self.finished(self.bad_key, bad_ep)
        elapsed = time.monotonic() - t0
        self.assertEqual(len(history), 1, history)
        a = history[0]
        self.assertLess(a["duration_ms"], timeout_ms + SLACK * 1000, a)
        self.assertLess(elapsed, timeout_ms / 1000 + SLACK, a)
        return a, elapsed

    # -- answers that do not end --------------------------------------------------------

    def test_endless_body_is_cut_at_its_bound(self):
        """A 200 whose body never ends is judged by its status once the body's bound is
        read; the bound ends it, long before the timeout."""
        a, t = self.probe(flood(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", b"x"))
        self.assertEqual((a["error_class"], a["http_status"]), (None, 200), a)
        self.assertTrue(a["response_head"].startswith("xxxx"), a)
        self.assertLess(a["duration_ms"], TIMEOUT_MS, a)

    def test_endless_head_is_a_protocol_failure(self):
        a, t = self.probe(flood(b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n"))
        self.assertEqual(a["error_class"], "protocol", a)
        self.assertEqual(a["error"], "a response head over 16 KiB")
        self.assertLess(a["duration_ms"], TIMEOUT_MS, a)

    def test_endless_head_in_one_byte_records(self):
        """The same in records of one byte each: 16 KiB of records, as many reads. The
        attempt may last 6 s, not 1.5: the test's own server writes each record with a
        system call, and under the sanitizers beside another test (ctest -j2) the 16 KiB
        once took longer than 1.5 s to send (a timeout, not the bound, ended it)."""
        a, t = self.probe(flood(b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n", record=1),
                          timeout_ms=6000)
        self.assertEqual(a["error_class"], "protocol", a)
        self.assertEqual(a["error"], "a response head over 16 KiB")

    def test_head_in_one_byte_records_sent_at_once(self):
        """A head over its bound, one byte per record, every record already waiting: the
        engine reads them in one go and parses them once (parsing after each record was
        quadratic: the engine thread was held for seconds, the healthy endpoint waited).
        The attempt may last 6 s, as above: reading the 17 000 records takes about 0.13 s
        in the release build and 0.8 s under the sanitizers alone; beside another test in
        CI it once passed 1.5 s (a timeout, not the bound, ended it). The engine being
        held is still caught: the healthy endpoint must be served within a second."""
        a, t = self.probe(records_at_once(b"HTTP/1.1 200 OK\r\n" + b"a:b\r\n" * 3400),
                          timeout_ms=6000)
        self.assertEqual(a["error_class"], "protocol", a)
        self.assertEqual(a["error"], "a response head over 16 KiB")

    def test_many_tiny_records_do_not_hold_the_engine(self):
        """About 400 000 records of one byte each (interim answers, under the 1 MiB bound),
        every one already waiting: the engine reads one connection a bounded number of
        times per turn of its loop, so another endpoint's delivery is not held behind them
        (it waited seconds, the whole flood, with the bound in bytes only). The records
        are made after the request, in the attempt's time: it is longer here. The cut at
        the end is a reset when the engine reads the flood within that time, a timeout when
        it does not (a sanitizer build, about four times slower, did not in CI); either
        way no answer was taken from it."""
        flood = b"HTTP/1.1 103 Early Hints\r\n\r\n" * (400000 // 29)
        a, t = self.probe(records_at_once(flood, then="cut"), timeout_ms=6000)
        self.assertIn(a["error_class"], ("reset", "timeout"), a)
        self.assertIsNone(a["http_status"], a)

    def test_endless_interim_answers_stop_at_one_mib(self):
        a, t = self.probe(flood(b"", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"))
        self.assertEqual(a["error_class"], "protocol", a)
        self.assertEqual(a["error"], "no final response in the first 1 MiB")
        self.assertLess(a["duration_ms"], TIMEOUT_MS, a)

    def test_endless_trailers_stop_at_one_mib(self):
        a, t = self.probe(flood(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"2\r\nok\r\n0\r\n", b"X-T: 1\r\n"))
        self.assertEqual((a["error_class"], a["http_status"], a["response_head"]),
                         (None, 200, "ok"), a)
        self.assertLess(a["duration_ms"], TIMEOUT_MS, a)

    def test_trickled_answer_times_out(self):
        """A head that comes one byte per record every 20 ms ends at the timeout."""
        def trickle(srv, s):
            srv.reached()
            for b in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 4000 + b"\r\n\r\n":
                s.sendall(bytes([b]))
                time.sleep(0.02)  # the trickle itself
        a, t = self.probe(answer_then(trickle))
        self.assertEqual(a["error_class"], "timeout", a)
        self.assertGreaterEqual(a["duration_ms"], TIMEOUT_MS - 50, a)

    # -- the handshake ------------------------------------------------------------------

    def test_handshake_never_answered_times_out(self):
        a, t = self.probe(handshake_unanswered)
        self.assertEqual(a["error_class"], "timeout", a)
        self.assertGreaterEqual(a["duration_ms"], TIMEOUT_MS - 50, a)

    def test_trickled_handshake_times_out(self):
        a, t = self.probe(handshake_trickled)
        self.assertEqual(a["error_class"], "timeout", a)
        self.assertGreaterEqual(a["duration_ms"], TIMEOUT_MS - 50, a)

    def test_plain_http_on_the_https_port_is_a_tls_failure(self):
        a, t = self.probe(plaintext)
        self.assertEqual(a["error_class"], "tls", a)

    def test_huge_certificate_chain_is_a_tls_failure(self):
        """About 200 KiB of certificates: over OpenSSL's 100 KiB, refused quickly."""
        srv_ctx = server_context(*self.certs["huge"])
        a, t = self.probe(verified_only, srv_ctx)
        self.assertEqual(a["error_class"], "tls", a)
        self.assertIn("excessive message size", a["error"])
        self.assertEqual(self.servers[0].counts["requests"], 0)

    def test_certificate_for_another_name_is_a_tls_failure(self):
        a, t = self.probe(verified_only, server_context(*self.certs["wrong"]))
        self.assertEqual(a["error_class"], "tls", a)
        self.assertEqual(self.servers[0].counts["requests"], 0)

    def test_certificate_from_an_unknown_ca_is_a_tls_failure(self):
        a, t = self.probe(verified_only, server_context(*self.certs["other"]))
        self.assertEqual(a["error_class"], "tls", a)
        self.assertEqual(self.servers[0].counts["requests"], 0)

    # -- records and closes -------------------------------------------------------------

    def test_close_without_close_notify_mid_body_is_a_reset(self):
        def tail(srv, s):
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok")
            cut(srv, s)
        a, t = self.probe(answer_then(tail))
        self.assertEqual((a["error_class"], a["http_status"]), ("reset", 200), a)

    def test_close_without_close_notify_ends_a_close_delimited_body(self):
        """A body delimited by the close, closed without close_notify (many servers do):
        the status came whole in authenticated records, and it is what the attempt is
        judged by, so the answer counts, as over plain HTTP."""
        def tail(srv, s):
            s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok")
            cut(srv, s)
        a, t = self.probe(answer_then(tail))
        self.assertEqual((a["error_class"], a["http_status"], a["response_head"]),
                         (None, 200, "ok"), a)

    def truncated_record(self, then):
        def tail(srv, s):
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
            with raw_of(s) as raw:
                raw.sendall(b"\x17\x03\x03\x00\x40" + b"\x00" * 10)  # a record of 64 bytes, 10 sent
            then(srv, s)
        return self.probe(answer_then(tail))

    def test_truncated_record_then_close_is_a_reset(self):
        a, t = self.truncated_record(cut)
        self.assertEqual((a["error_class"], a["http_status"]), ("reset", 200), a)

    def test_truncated_record_left_open_times_out(self):
        a, t = self.truncated_record(hold)
        self.assertEqual((a["error_class"], a["http_status"]), ("timeout", 200), a)
        self.assertGreaterEqual(a["duration_ms"], TIMEOUT_MS - 50, a)

    def test_forged_record_in_a_close_delimited_body_is_a_failure(self):
        """A record that fails its integrity check (bad MAC) is never taken as the end of
        a body, even one delimited by the close."""
        def tail(srv, s):
            s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok")
            with raw_of(s) as raw:
                raw.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
            hold(srv, s)
        a, t = self.probe(answer_then(tail))
        self.assertEqual((a["error_class"], a["http_status"]), ("reset", 200), a)
        self.assertLess(a["duration_ms"], TIMEOUT_MS, a)

    def test_answer_in_one_byte_records(self):
        """A chunked answer, one byte per TLS record: every boundary falls somewhere odd."""
        def tail(srv, s):
            for b in (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"):
                s.sendall(bytes([b]))
            hold(srv, s)
        a, t = self.probe(answer_then(tail))
        self.assertEqual((a["error_class"], a["http_status"], a["response_head"]),
                         (None, 200, "ok"), a)

    # -- close_notify on a kept connection -----------------------------------------------

    def two_deliveries(self, behave, between=None):
        """Two deliveries, one after the other, to one endpoint running `behave`; each must
        succeed in its one attempt. `between(srv)` runs after the first."""
        srv = self.serve(behave)
        ep = self.endpoint(self.bad_key, srv.url)
        self.ingest(self.bad_pid, 1)
        self.finished(self.bad_key, ep, 1)
        if between:
            between(srv)
        self.ingest(self.bad_pid, 2)
        for h in self.finished(self.bad_key, ep, 2):
            self.assertEqual([(a["error_class"], a["http_status"]) for a in h], [(None, 204)], h)
        return srv

    @staticmethod
    def send_close_notify(s):
        """Sends close_notify on `s` and returns without waiting for the peer's."""
        s.setblocking(False)
        try:
            s.unwrap()
        except ssl.SSLWantReadError:
            pass
        s.setblocking(True)

    def test_close_notify_on_an_idle_connection_is_not_reused(self):
        """The receiver answers, then sends close_notify and leaves TCP open: the engine
        closes that connection at once (not at its next use), and the next delivery goes on
        a new one."""
        late = []

        def behave(srv, c):
            s = srv.tls(c)
            if srv.request(s) is None:
                return
            s.sendall(NO_CONTENT)
            self.send_close_notify(s)
            srv.reached()
            try:
                s.unwrap()  # the engine's close_notify, or its close
            except ssl.SSLError as e:
                if e.reason == "APPLICATION_DATA_AFTER_CLOSE_NOTIFY":
                    late.append(e)
            srv.bump("closed")

        def between(srv):
            self.assertEqual(srv.wait("hits", 1, 10), 1)
            self.assertEqual(srv.wait("closed", 1, 5), 1, "the engine kept the connection")

        srv = self.two_deliveries(behave, between)
        self.assertEqual(late, [], "a request went out after the receiver's close_notify")
        self.assertEqual(srv.wait("hits", 2, 10), 2)
        self.assertEqual(srv.counts["connections"], 2)

    def test_stray_record_with_the_answer_closes_the_connection(self):
        """The receiver answers and, in the same write, sends a second record that nobody
        asked for (an answer to no request). The engine reads ahead, so that record sits in
        OpenSSL's buffer with the socket quiet: the engine must read it as the answer ends
        and close the connection at once, never take it as the next request's answer."""
        stray = b"HTTP/1.1 299 Stray\r\nContent-Length: 0\r\n\r\n"

        def behave(srv, c):
            t = BioTls(srv, c)
            if srv.request(t) is None:
                return
            c.sendall(t.records(NO_CONTENT, len(NO_CONTENT)) + t.records(stray, len(stray)))
            srv.reached()
            while c.recv(65536):  # the engine's close_notify, then its close
                pass
            srv.bump("closed")

        def between(srv):
            self.assertEqual(srv.wait("hits", 1, 10), 1)
            self.assertEqual(srv.wait("closed", 1, 5), 1, "the engine kept the connection")

        srv = self.two_deliveries(behave, between)
        self.assertEqual(srv.wait("hits", 2, 10), 2)
        self.assertEqual(srv.counts["connections"], 2)

    def test_close_notify_as_the_next_request_comes_retries_on_a_new_connection(self):
        """The receiver answers on a connection, keeps it, and when the next request comes
        on it, sends close_notify instead of an answer and closes (a server closing an idle
        connection as the client sends). Nothing of an answer came: the request goes again
        on a new connection, within the same attempt."""
        def behave(srv, c):
            s = srv.tls(c)
            if srv.request(s) is None:
                return
            s.sendall(NO_CONTENT)
            select.select([s], [], [], 30)  # the next request's first bytes, unread
            srv.reached()
            self.send_close_notify(s)

        srv = self.two_deliveries(behave)
        self.assertEqual(srv.wait("hits", 1, 10), 1)
        self.assertEqual(srv.counts["requests"], 2)
        self.assertEqual(srv.counts["connections"], 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
