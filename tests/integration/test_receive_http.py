"""`vocohook receive` over HTTP: what is accepted, stored once, or refused (and then nothing
is stored). Requests are signed here with Python's hmac, independently of vocohook."""
import concurrent.futures
import hashlib
import hmac
import http.client
import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from recv_harness import (SECRET, Receiver, Response, now_iso, payload, sign,  # noqa: E402
                          wait_until)
from server import DATA, post_whole_body, read_until_closed  # noqa: E402
from tls_front import TlsFront  # noqa: E402

SID = "s1234567-abcd-1234-abcd-123456789012"


class Accepted(unittest.TestCase):
    def test_signed_delivery_is_stored_byte_for_byte(self):
        body = payload(SID)
        with Receiver() as r:
            headers = sign(body)
            headers["X-Webhook-Id"] = "0b6c7e0e-8f3a-4a8e-9d55-2f0b7f1d2c3a"
            resp = r.post(body, headers)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(resp.json(), {"ok": True, "session_id": SID, "duplicate": False})
            rows = r.rows("SELECT body, signed_at, signature, webhook_id FROM sessions")
            self.assertEqual(len(rows), 1)
            self.assertEqual(rows[0][0], body)
            self.assertEqual(rows[0][1], headers["X-Webhook-Timestamp"])
            self.assertEqual(rows[0][2], headers["X-Webhook-Signature"])
            self.assertEqual(rows[0][3], headers["X-Webhook-Id"])
            exported = r.export()[SID]
            self.assertEqual(exported["payload"], json.loads(body))
            self.assertEqual(exported["recording"], "none")

    def test_header_values_with_trailing_whitespace_verify(self):
        """RFC 9110 5.5: whitespace around a field value is not part of it. libmicrohttpd
        strips the leading only; the server strips the trailing too, so both are stored
        and verified as the sender signed them."""
        body = payload(SID)
        with Receiver() as r:
            good = sign(body)
            resp = r.post(body, {"X-Webhook-Timestamp": good["X-Webhook-Timestamp"] + " \t",
                                 "X-Webhook-Signature": good["X-Webhook-Signature"] + "  "})
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(r.rows("SELECT signed_at, signature FROM sessions"),
                             [(good["X-Webhook-Timestamp"], good["X-Webhook-Signature"])])

    def test_root_path_works_too(self):
        with Receiver() as r:
            body = payload(SID)
            self.assertEqual(r.post(body, sign(body), path="/").status, 200)
            self.assertEqual(r.count(), 1)

    def test_pretty_printed_body_is_kept_as_sent(self):
        body = json.dumps(json.loads(payload(SID)), indent=2).encode()
        with Receiver() as r:
            self.assertEqual(r.deliver(body).status, 200)
            self.assertEqual(r.rows("SELECT body FROM sessions")[0][0], body)

    def test_replay_is_200_and_stored_once(self):
        body = payload(SID)
        headers = sign(body)
        with Receiver() as r:
            first = r.post(body, headers)
            second = r.post(body, headers)
            third = r.deliver(body)  # a retry: new timestamp, same session
            self.assertEqual([first.status, second.status, third.status], [200, 200, 200])
            self.assertFalse(first.json()["duplicate"])
            self.assertTrue(second.json()["duplicate"])
            self.assertTrue(third.json()["duplicate"])
            self.assertEqual(r.count(), 1)

    def test_fifty_concurrent_identical_requests_store_one_row(self):
        body = payload(SID)
        headers = sign(body)
        with Receiver() as r:
            with concurrent.futures.ThreadPoolExecutor(50) as pool:
                results = list(pool.map(lambda _: r.post(body, headers), range(50)))
            self.assertEqual({x.status for x in results}, {200})
            self.assertEqual(sum(not x.json()["duplicate"] for x in results), 1)
            self.assertEqual(r.count(), 1)

    def test_many_sessions_at_once_are_all_stored(self):
        bodies = [payload(f"sess_{i}") for i in range(100)]
        with Receiver() as r:
            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                results = list(pool.map(r.deliver, bodies))
            self.assertEqual({x.status for x in results}, {200})
            self.assertEqual(r.count(), 100)

    def test_kill_9_loses_no_acknowledged_webhook(self):
        r = Receiver().start()
        acked, stop = [], threading.Event()

        def sender(k):
            i = 0
            while not stop.is_set():
                sid = f"k{k}_{i}"
                try:
                    if r.deliver(payload(sid), timeout=5).status == 200:
                        acked.append(sid)
                except OSError:
                    return  # the receiver is gone
                i += 1
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
        try:
            for t in threads:
                t.start()
            wait_until(lambda: len(acked) >= 300, 30, "300 acknowledged webhooks")
            r.kill()  # SIGKILL in the middle of the stream
        finally:
            stop.set()
            for t in threads:
                t.join(10)
            r.kill()
        stored = {row[0] for row in r.rows("SELECT session_id FROM sessions")}
        self.assertEqual(set(acked) - stored, set())
        with Receiver(tmp=r.tmp) as r2:  # and the file opens cleanly again
            self.assertGreaterEqual(r2.count(), len(acked))

    def test_second_secret_during_rotation(self):
        old, new = "whsec_old_secret_value", "whsec_new_secret_value"
        with Receiver(secrets=(old, new)) as r:
            self.assertEqual(r.deliver(payload("s_old"), secret=old).status, 200)
            self.assertEqual(r.deliver(payload("s_new"), secret=new).status, 200)
            self.assertEqual(r.deliver(payload("s_bad"), secret=SECRET).status, 401)
            self.assertEqual(r.count(), 2)

    def test_secret_from_flag(self):
        with Receiver(args=["--secret", "flag_secret"], secrets=()) as r:
            self.assertEqual(r.deliver(payload(SID), secret="flag_secret").status, 200)
        self.assertIn("prefer VOCOHOOK_SECRETS", r.err.text())

    def test_newer_sender_fields_are_accepted_and_kept(self):
        with open(os.path.join(DATA, "good", "payload_newer_sender.json"), "rb") as f:
            body = f.read()
        with Receiver() as r:
            resp = r.deliver(body)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(r.rows("SELECT body FROM sessions")[0][0], body)

    def test_answers_fast(self):
        with Receiver() as r:
            worst = 0.0
            for i in range(20):
                t0 = time.monotonic()
                self.assertEqual(r.deliver(payload(f"fast_{i}")).status, 200)
                worst = max(worst, time.monotonic() - t0)
            self.assertLess(worst, 1.0)


class Refused(unittest.TestCase):
    """Every refusal leaves the inbox empty."""

    @classmethod
    def setUpClass(cls):
        cls.r = Receiver().start()

    @classmethod
    def tearDownClass(cls):
        cls.r.stop()

    def tearDown(self):
        self.assertEqual(self.r.count(), 0)

    def unauthorized(self, resp, reason):
        self.assertEqual(resp.status, 401, resp)
        j = resp.json()
        self.assertEqual((j["ok"], j["error"], j["reason"]), (False, "unauthorized", reason))
        self.assertTrue(j["message"])
        self.assertNotIn("\n", resp.body.decode())

    def test_tampered_body(self):
        body = payload(SID)
        headers = sign(body)
        self.unauthorized(self.r.post(body.replace(b"127", b"128"), headers), "mismatch")
        self.unauthorized(self.r.post(body + b" ", headers), "mismatch")

    def test_wrong_secret(self):
        self.unauthorized(self.r.deliver(payload(SID), secret="whsec_wrong"), "mismatch")

    def test_old_and_future_timestamps(self):
        self.unauthorized(self.r.deliver(payload(SID), ts=now_iso(-301)), "too_old")
        self.unauthorized(self.r.deliver(payload(SID), ts=now_iso(+301)), "too_new")
        self.unauthorized(self.r.deliver(payload(SID), ts="2020-01-01T00:00:00.000Z"), "too_old")

    def test_malformed_and_missing_headers(self):
        body = payload(SID)
        good = sign(body)
        ts, sig = good["X-Webhook-Timestamp"], good["X-Webhook-Signature"]
        self.unauthorized(self.r.post(body, {"X-Webhook-Signature": sig}), "bad_timestamp")
        self.unauthorized(self.r.post(body, {"X-Webhook-Timestamp": ts}), "bad_signature")
        self.unauthorized(self.r.post(body, {}), "bad_timestamp")
        for bad_sig in (sig[7:], "sha1=" + sig[7:], sig + "0", sig[:-1], "sha256=" + "z" * 64):
            self.unauthorized(self.r.post(body, {"X-Webhook-Timestamp": ts,
                                                 "X-Webhook-Signature": bad_sig}),
                              "bad_signature")
        for bad_ts in (ts[:-1], ts.replace("Z", "+00:00"), ts[:19] + "Z", str(int(time.time()))):
            h = sign(body, ts=bad_ts)  # correctly signed over the odd timestamp
            self.unauthorized(self.r.post(body, h), "bad_timestamp")

    def test_timestamp_shifted_into_the_body(self):
        # HMAC("{ts}.{body}") cannot tell where the timestamp ends, and the timestamp has a
        # "." of its own: "2026-03-15T14:32:08" + "." + "000Z.{body}" is the same message as
        # "2026-03-15T14:32:08.000Z" + "." + "{body}". Only the exact timestamp form stops it.
        body = payload(SID)
        ts = now_iso()
        mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        head, tail = ts.split(".")
        moved = tail.encode() + b"." + body
        self.assertEqual(head.encode() + b"." + moved, ts.encode() + b"." + body)
        resp = self.r.post(moved, {"X-Webhook-Timestamp": head,
                                   "X-Webhook-Signature": "sha256=" + mac})
        self.unauthorized(resp, "bad_timestamp")
        # And the other way: body bytes pulled into the timestamp header.
        resp = self.r.post(body[3:], {"X-Webhook-Timestamp": ts + "." + body[:2].decode(),
                                      "X-Webhook-Signature": "sha256=" + mac})
        self.unauthorized(resp, "bad_timestamp")

    def test_contract_breaking_payloads_are_400(self):
        good = json.loads(payload(SID))
        cases = []
        p = json.loads(json.dumps(good))
        p["event"] = "session.started"
        cases.append(("event", p))
        p = json.loads(json.dumps(good))
        del p["data"]["session_id"]
        cases.append(("data: missing key \"session_id\"", p))
        p = json.loads(json.dumps(good))
        p["data"]["transcript"][1]["role"] = "agent"
        cases.append(("data.transcript[1].role", p))
        p = json.loads(json.dumps(good))
        p["data"]["duration_seconds"] = "127"
        cases.append(("data.duration_seconds", p))
        for path, p in cases:
            body = json.dumps(p, separators=(",", ":")).encode()
            resp = self.r.deliver(body)
            self.assertEqual(resp.status, 400, (path, resp))
            j = resp.json()
            self.assertEqual((j["ok"], j["error"]), (False, "invalid_payload"))
            self.assertTrue(j["message"].startswith(path), (path, j))
        # A key that is not ASCII reads back as the characters sent, not as their bytes.
        body = json.dumps(good, separators=(",", ":")).replace(
            '"data":{', '"data":{"\u00e9t\u00e9":1,"\u00e9t\u00e9":2,', 1).encode()
        resp = self.r.deliver(body)
        self.assertEqual(resp.status, 400, resp)
        self.assertIn("\u00e9t\u00e9", resp.json()["message"])
        self.assertIn(b"\\u00e9t\\u00e9", resp.body)
        for raw in (b"", b"not json", b"[]", b'{"event":"session.completed"', b"\xff\xfe"):
            resp = self.r.deliver(raw)
            self.assertEqual(resp.status, 400, (raw, resp))

    def test_unsigned_garbage_is_401_not_400(self):
        self.unauthorized(self.r.post(b"not json", {}), "bad_timestamp")

    def test_other_paths_and_methods(self):
        body = payload(SID)
        self.assertEqual(self.r.post(body, sign(body), path="/other").status, 404)
        self.assertEqual(self.r.post(body, sign(body), path="/webhook/x").status, 404)
        for method, path, allow in (("GET", "/webhook", "POST"), ("PUT", "/", "POST"),
                                    ("POST", "/healthz", "GET, HEAD"),
                                    ("DELETE", "/healthz", "GET, HEAD")):
            resp = self.r.post(body, sign(body), path=path, method=method)
            self.assertEqual((resp.status, resp.headers.get("allow")), (405, allow), resp)
            self.assertEqual(resp.json()["error"], "method_not_allowed", resp)
        resp = self.r.post(None, {}, path="/healthz", method="GET")
        self.assertEqual((resp.status, resp.json()), (200, {"ok": True}))
        resp = self.r.post(None, {}, path="/healthz", method="HEAD")
        self.assertEqual((resp.status, resp.body), (200, b""))

    def head_only(self, headers, length=1024 * 1024):
        """Sends a POST's head declaring `length` body bytes; returns the socket."""
        sock = socket.create_connection(("127.0.0.1", self.r.port), timeout=10)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall((f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"{lines}Content-Length: {length}\r\n\r\n").encode())
        return sock

    def test_no_body_is_read_before_the_headers_pass(self):
        # Found in review: the whole body (up to 1 MiB) was buffered before the signature
        # headers were looked at. Missing headers and a timestamp outside the window now
        # get their 401 on the head alone, the body never sent.
        body = payload(SID)
        good = sign(body)
        cases = [({}, "bad_timestamp"),
                 ({"X-Webhook-Timestamp": good["X-Webhook-Timestamp"]}, "bad_signature"),
                 ({"X-Webhook-Timestamp": now_iso(-301),
                   "X-Webhook-Signature": good["X-Webhook-Signature"]}, "too_old")]
        for headers, reason in cases:
            sock = self.head_only(headers)
            data, _ = read_until_closed(sock, 10)  # the answer, then the server closes
            sock.close()
            head, _, rest = data.partition(b"\r\n\r\n")
            self.unauthorized(Response(int(head.split()[1]), rest), reason)
        # Headers that pass: the body is read, and the signature judged on it.
        tampered = body.replace(b"127", b"128")
        sock = self.head_only(dict(good, Connection="close"), len(tampered))
        sock.sendall(tampered)
        data, _ = read_until_closed(sock, 10)
        sock.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        self.unauthorized(Response(int(head.split()[1]), rest), "mismatch")

    def test_body_over_the_bound_is_413(self):
        body = b"{" + b" " * (1024 * 1024 + 10) + b"}"
        self.assertEqual(self.r.deliver(body).status, 413)

    def test_an_ambiguous_body_length_is_400_and_the_connection_closed(self):
        # RFC 9112 §6.3: Content-Lengths that differ, or one beside a Transfer-Encoding, make
        # the framing ambiguous. libmicrohttpd served them as the first length or the chunks
        # said and kept the connection, so a request pipelined after them was answered too;
        # a proxy in front that framed the message by the other header would have had the
        # receiver read part of its next request as this body (found in review, session 21).
        body = payload("s_ambiguous")
        signed = "".join(f"{k}: {v}\r\n" for k, v in sign(body).items())
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        cases = {
            "two lengths": (f"Content-Length: {len(body)}\r\nContent-Length: 3\r\n", body),
            "length and chunked": ("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                                   chunked),
        }
        for name, (framing, sent) in cases.items():
            with self.subTest(name):
                self.refused_framing(framing + signed, sent, "ambiguous_length")
        # Nothing of them was stored.
        rc, out, err = self.r.cli("sessions", "list")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("s_ambiguous", out)

    def refused_framing(self, head_lines, sent, reason):
        """Sends a POST with `head_lines` and `sent` and a GET after it on one connection:
        one 400 in the receiver's own envelope (until session 22 the partner API's
        {"success":false,...}), and the connection closed, the GET never answered."""
        sock = socket.create_connection(("127.0.0.1", self.r.port), timeout=10)
        sock.sendall(f"POST /webhook HTTP/1.1\r\nHost: x\r\n{head_lines}\r\n".encode() + sent +
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _ = read_until_closed(sock, 10)
        sock.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:200])
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nConnection: close", head)
        j = json.loads(body)
        self.assertEqual((j["ok"], j["error"], j["reason"]), (False, "bad_request", reason), j)
        self.assertTrue(j["message"])

    def test_a_body_framed_in_a_way_libmicrohttpd_reads_otherwise_is_400(self):
        # Found in review (session 22). A Transfer-Encoding other than one "chunked" alone
        # made libmicrohttpd read the body until the connection closed (the client waited
        # for an answer that never came), where a proxy in front reads chunks; and white
        # space before a colon (RFC 9112 §5.1: MUST be refused) hid the field from us, so
        # `Transfer-Encoding : chunked` beside a Content-Length framed by the length here and
        # by the chunks in a lenient proxy. Each is refused on its head and closed.
        body = payload("s_framing")
        signed = "".join(f"{k}: {v}\r\n" for k, v in sign(body).items())
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        cases = [
            ("Transfer-Encoding: gzip\r\n", body, "unsupported_transfer_encoding"),
            ("Transfer-Encoding: gzip, chunked\r\n", chunked, "unsupported_transfer_encoding"),
            ("Transfer-Encoding: chunked \r\n", chunked, "unsupported_transfer_encoding"),
            ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", chunked,
             "unsupported_transfer_encoding"),
            (f"Content-Length: {len(chunked)}\r\nTransfer-Encoding : chunked\r\n", chunked,
             "bad_header_name"),
            (f"Content-Length : 3\r\nContent-Length: {len(body)}\r\n", body, "bad_header_name"),
        ]
        for framing, sent, reason in cases:
            with self.subTest(framing):
                self.refused_framing(framing + signed, sent, reason)
        rc, out, err = self.r.cli("sessions", "list")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("s_framing", out)
        # The chunked coding alone, in any case, is still read.
        with Receiver() as r:
            sock = socket.create_connection(("127.0.0.1", r.port), timeout=10)
            sock.sendall(f"POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         f"Transfer-Encoding: Chunked\r\n{signed}\r\n".encode() + chunked)
            data, _ = read_until_closed(sock, 10)
            sock.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:300])

    def test_a_repeated_signature_header_is_401_naming_it(self):
        # Found in review (session 22): libmicrohttpd gives the first of repeated header
        # lines, so a request with two signatures (or two timestamps) was judged by the first
        # and stored, while a proxy or a second reader could take the last. The server now
        # joins them (RFC 9110 §5.3), and the receiver refuses the list as it does any
        # malformed signature header, naming it, on the head (body unread).
        body = payload(SID)
        good = sign(body)
        ts, sig = good["X-Webhook-Timestamp"], good["X-Webhook-Signature"]
        other = "sha256=" + "0" * 64
        cases = [
            ([("X-Webhook-Timestamp", ts), ("X-Webhook-Signature", sig),
              ("X-Webhook-Signature", other)], "bad_signature", "X-Webhook-Signature"),
            ([("X-Webhook-Timestamp", ts), ("x-webhook-signature", other),
              ("X-Webhook-Signature", sig)], "bad_signature", "X-Webhook-Signature"),
            ([("X-Webhook-Signature", sig), ("X-Webhook-Signature", sig),
              ("X-Webhook-Timestamp", ts)], "bad_signature", "X-Webhook-Signature"),
            ([("X-Webhook-Timestamp", ts), ("X-Webhook-Timestamp", ts),
              ("X-Webhook-Signature", sig)], "bad_timestamp", "X-Webhook-Timestamp"),
            ([("X-Webhook-Timestamp", ""), ("X-Webhook-Timestamp", ts),
              ("X-Webhook-Signature", sig)], "bad_timestamp", "X-Webhook-Timestamp"),
        ]
        for lines, reason, name in cases:
            with self.subTest(lines=lines):
                head = "".join(f"{k}: {v}\r\n" for k, v in lines)
                sock = socket.create_connection(("127.0.0.1", self.r.port), timeout=10)
                sock.sendall(f"POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             f"Content-Type: application/json\r\n{head}"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                data, _ = read_until_closed(sock, 10)
                sock.close()
                status, _, rest = data.partition(b"\r\n\r\n")
                resp = Response(int(status.split()[1]), rest)
                self.unauthorized(resp, reason)
                self.assertEqual(resp.json()["message"], f"{name}: more than one value")
        # One line each still passes (on a receiver of its own: this class stores nothing).
        with Receiver() as r:
            self.assertEqual(r.post(body, good).status, 200)


class EarlyAnswer(unittest.TestCase):
    """A webhook refused on its head (no signature headers, a Content-Length over 16 times
    the 1 MiB bound) is answered before its body is read, and the connection closed. A
    client that sends its whole body before reading (http.client, and the TLS terminator
    docs/receiving.md puts in front) must still get that answer: before, the receiver closed
    with the body unread, the kernel reset the connection, the client's send failed (EPIPE
    or ECONNRESET) and nginx answered 502."""

    MIB = 1024 * 1024
    # (headers, declared body length, status, error, reason)
    CASES = [
        ({}, 16 * MIB, 401, "unauthorized", "bad_timestamp"),
        ({}, 32 * MIB, 413, "payload_too_large", None),  # the length is looked at first
    ]

    def post_each(self, connect):
        for headers, size, status, error, reason in self.CASES:
            with self.subTest(status=status):
                r, closes = post_whole_body(connect(), "/webhook",
                                            dict(headers, **{"Content-Type": "application/json"}),
                                            b" " * size)
                self.assertEqual(r.status, status, r)
                j = r.json()
                self.assertEqual((j["ok"], j["error"], j.get("reason")), (False, error, reason))
                yield r, closes

    def test_a_client_that_sends_the_whole_body_gets_the_answer(self):
        with Receiver() as r:
            for resp, closes in self.post_each(
                    lambda: http.client.HTTPConnection("127.0.0.1", r.port, timeout=30)):
                self.assertEqual(resp.headers["connection"], "close", resp.headers)
                self.assertTrue(closes)
            self.assertEqual(r.deliver(payload(SID)).status, 200)
            self.assertEqual(r.count(), 1)

    def test_the_answer_gets_through_a_tls_terminator(self):
        # nginx reads the whole body first (its default), or streams it (buffering off).
        for buffering in ("on", "off"):
            with self.subTest(buffering=buffering), Receiver() as r, \
                    TlsFront(r.port, buffering) as front:
                def connect():
                    return http.client.HTTPSConnection("127.0.0.1", front.port, timeout=30,
                                                       context=front.context())
                for _ in self.post_each(connect):
                    pass
                body = payload(SID)
                resp, _ = post_whole_body(connect(), "/webhook", sign(body), body)
                self.assertEqual(resp.status, 200, resp)


if __name__ == "__main__":
    unittest.main()
