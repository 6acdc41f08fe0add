"""The bad-input corpus through the running daemon's ingest API: every case answers 400
with the JSON path and reason, and nothing is stored."""
import csv
import json
import os
import sqlite3
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import DATA, Daemon, create_partner  # noqa: E402


def manifest(modes):
    with open(os.path.join(DATA, "bad", "MANIFEST.tsv"), newline="", encoding="utf-8") as f:
        return [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r and not r[0].startswith("#") and r[1] in modes]


def in_envelope(message):
    """A bare-session message as the ingest body reports it (under `session`)."""
    if message.startswith("json:"):
        return None  # byte offsets move inside the envelope; only the kind is compared
    if message.startswith("(root)"):
        return "session" + message[len("(root)"):]
    return "session." + message


class IngestCorpus(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.pid, self.key = create_partner(self.d.db)
        self.d.start()
        r = self.d.request("POST", "/api/v2/config/webhooks", key=self.key,
                           body={"label": "main", "url": "https://example.invalid/h"})
        self.assertEqual(r.status, 201, r)

    def tearDown(self):
        self.d.cleanup()

    def post(self, body):
        r = self.d.request("POST", "/internal/v1/sessions", body=body,
                           headers={"Authorization": f"Bearer {self.d.token}",
                                    "Content-Type": "application/json"})
        return r.status, json.loads(r.body)

    def rows(self, table):
        con = sqlite3.connect(self.d.db.split(":", 1)[1], timeout=10)
        try:
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            con.close()

    def test_every_bad_input_is_rejected_with_its_path_and_stores_nothing(self):
        cases = 0
        for name, mode, _code, message in manifest({"ingest", "session"}):
            with open(os.path.join(DATA, "bad", name), "rb") as f:
                raw = f.read()
            if mode == "ingest":
                body, want = raw, message
            else:
                body = b'{"partner_id":"' + self.pid.encode() + b'","session":' + raw + b"}"
                want = in_envelope(message)
            with self.subTest(file=name):
                status, resp = self.post(body)
                self.assertEqual(status, 400, (name, resp))
                self.assertFalse(resp["success"])
                self.assertEqual(resp["error"]["code"], "VALIDATION_ERROR")
                if want is None:
                    self.assertTrue(resp["error"]["message"].startswith("json: "), resp)
                else:
                    self.assertEqual(resp["error"]["message"], want)
            cases += 1
        self.assertGreaterEqual(cases, 30)
        self.assertEqual((self.rows("events"), self.rows("deliveries")), (0, 0))

    def test_a_good_session_after_all_that_is_stored(self):
        with open(os.path.join(DATA, "good", "seed_session.json"), "rb") as f:
            session = json.loads(f.read())
        status, resp = self.post(json.dumps({"partner_id": self.pid,
                                             "session": session}).encode())
        self.assertEqual(status, 202, resp)
        self.assertEqual((self.rows("events"), self.rows("deliveries")), (1, 1))


if __name__ == "__main__":
    unittest.main(verbosity=2)
