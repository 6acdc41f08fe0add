"""The daemon's log: JSON lines on stderr, one per request with its request id, and never
an API key, an ingest token, an endpoint secret or a request body."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import Daemon, create_partner, seed_session  # noqa: E402


class Logs(unittest.TestCase):
    def test_json_lines_with_request_ids_and_no_secrets(self):
        d = Daemon()
        try:
            pid, key = create_partner(d.db)
            d.start()
            # Authenticated and failed calls, an endpoint with a secret, an ingest.
            r = d.request("POST", "/api/v2/config/webhooks", key=key,
                          body={"label": "main", "url": "https://example.com/hook"})
            self.assertEqual(r.status, 201, r)
            secret = r.json()["data"]["secret"]
            self.assertEqual(d.request("GET", "/api/v2/config/webhooks", key=key).status, 200)
            self.assertEqual(d.request("GET", "/api/v2/config", key=key + "x").status, 401)
            self.assertEqual(d.request("GET", "/api/v2/config/webhooks?token=" + d.token,
                                       key=key).status, 200)
            session = seed_session()
            r = d.ingest(pid, session)
            self.assertEqual(r.status, 202, r)
            self.assertEqual(d.ingest(pid, session, token="itok_" + "0" * 48).status, 401)
            rid = d.request("GET", "/healthz").headers["x-request-id"]
            self.assertIsNotNone(d.wait_log(lambda x: x.get("request_id") == rid),
                                 d.err.text())
            d.stop()

            text = d.err.text()
            for needle in (key, d.token, secret, key[len("rg_live_"):], d.token[5:],
                           session["transcript"][0]["content"]):
                self.assertNotIn(needle, text)
            records = d.log_records()  # every line is a JSON object
            for rec in records:
                self.assertIn(rec["level"], ("error", "warn", "info", "debug"))
                self.assertRegex(rec["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
                self.assertIsInstance(rec["msg"], str)
            requests = [x for x in records if x["msg"] == "request"]
            self.assertEqual(len(requests), 7, text)
            self.assertEqual(len({x["request_id"] for x in requests}), 7)
            for rec in requests:
                self.assertEqual(set(rec), {"ts", "level", "msg", "request_id", "method", "path",
                                            "status", "ms"})
            # The query string (which held the token above) is not part of the path.
            self.assertIn("/api/v2/config/webhooks", [x["path"] for x in requests])
            ingest = "/internal/v1/sessions"
            self.assertEqual([x["status"] for x in requests if x["path"] == ingest], [202, 401])
            msgs = [x["msg"] for x in records]
            self.assertIn("listening", msgs)
            self.assertIn("stopping", msgs)
            self.assertEqual(msgs[-1], "stopped")
        finally:
            d.cleanup()

    def test_without_ingest_token_warns_that_ingest_is_disabled(self):
        d = Daemon(ingest_token=None)
        try:
            d.start()
            rec = d.wait_log(lambda x: x["level"] == "warn" and "ingest disabled" in x["msg"])
            self.assertIsNotNone(rec, d.err.text())
            pid, _ = create_partner(d.db)
            r = d.ingest(pid, seed_session(), token="anything-at-all-1234")
            self.assertEqual(r.status, 401, r)
            d.stop()
        finally:
            d.cleanup()

    def test_development_settings_are_announced(self):
        d = Daemon(["--allow-http", "--allow-private-networks"])
        try:
            d.start()
            for word in ("allow_http", "allow_private_networks"):
                rec = d.wait_log(lambda x, w=word: x["level"] == "warn" and w in x["msg"])
                self.assertIsNotNone(rec, d.err.text())
            d.stop()
        finally:
            d.cleanup()

    def test_log_level_warn_drops_request_records(self):
        d = Daemon(["--log-level", "warn"])
        try:
            d.start()
            self.assertEqual(d.request("GET", "/healthz").status, 200)
            d.stop()
            self.assertNotIn("request", [x["msg"] for x in d.log_records()])
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
