"""`vocohook emit` ingests a session in-process, as the ingest API does; the daemon then
serves it on GET /api/v2/calls/<id>."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import (SEED_SESSION, Daemon, create_partner, parse_fields, run_cli,  # noqa: E402
                    seed_session)

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


class Emit(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.pid, self.key = create_partner(self.d.db)

    def tearDown(self):
        self.d.cleanup()

    def test_emit_then_read_over_http(self):
        rc, out, err = run_cli("emit", SEED_SESSION, "--partner", self.pid, "--db", self.d.db)
        self.assertEqual(rc, 0, err)
        fields = parse_fields(out)
        self.assertRegex(fields["event_id"], UUID)
        self.assertEqual(fields["deliveries"], "0")  # no endpoint yet
        self.assertEqual(fields["duplicate"], "false")

        # A repeat is idempotent on session_id.
        with open(SEED_SESSION, "rb") as f:
            rc, out, err = run_cli("emit", "-", "--partner", self.pid, "--db", self.d.db,
                                   stdin=f.read())
        self.assertEqual(rc, 0, err)
        again = parse_fields(out)
        self.assertEqual(again["event_id"], fields["event_id"])
        self.assertEqual(again["duplicate"], "true")

        seed = seed_session()
        with self.d:
            for ident in (seed["session_id"], seed["call"]["call_id"]):
                r = self.d.request("GET", f"/api/v2/calls/{ident}", key=self.key)
                self.assertEqual(r.status, 200, r)
                self.assertIn(seed["session_id"], r.body.decode())
            # Another partner does not see it.
            _, other = create_partner(self.d.db, "other")
            r = self.d.request("GET", f"/api/v2/calls/{seed['session_id']}", key=other)
            self.assertEqual(r.status, 404, r)

    def test_emit_counts_deliveries_for_enabled_endpoints(self):
        self.d.start()
        r = self.d.request("POST", "/api/v2/config/webhooks", key=self.key,
                           body={"label": "main", "url": "https://example.com/hook"})
        self.assertEqual(r.status, 201, r)
        self.d.stop()
        rc, out, err = run_cli("emit", SEED_SESSION, "--partner", self.pid, "--db", self.d.db)
        self.assertEqual(rc, 0, err)
        self.assertEqual(parse_fields(out)["deliveries"], "1")

    def test_rejections(self):
        bad = dict(seed_session())
        bad["transcript"] = [{"role": "robot", "content": "x",
                              "timestamp": "2026-03-15T14:30:01.000Z"}]
        rc, out, err = run_cli("emit", "-", "--partner", self.pid, "--db", self.d.db,
                               stdin=json.dumps(bad).encode())
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "")
        self.assertIn("transcript[0].role", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)

        rc, _, err = run_cli("emit", SEED_SESSION, "--partner",
                             "00000000-0000-4000-8000-000000000000", "--db", self.d.db)
        self.assertEqual(rc, 1, err)
        rc, _, err = run_cli("emit", "-", "--partner", self.pid, "--db", self.d.db,
                             stdin=b"{not json")
        self.assertEqual(rc, 1, err)
        rc, _, err = run_cli("emit", SEED_SESSION, "--db", self.d.db)
        self.assertEqual(rc, 2, err)
        rc, _, err = run_cli("emit", "--partner", self.pid, "--db", self.d.db)
        self.assertEqual(rc, 2, err)
        rc, _, err = run_cli("emit", "/no/such/file.json", "--partner", self.pid,
                             "--db", self.d.db)
        self.assertEqual(rc, 3, err)
        # recording_key without S3 settings is refused (nothing to presign with).
        rk = dict(seed_session())
        rk.pop("recording_url", None)
        rk["recording_key"] = "rec/abc.wav"
        rk["session_id"] = "s-recording-key"
        rc, _, err = run_cli("emit", "-", "--partner", self.pid, "--db", self.d.db,
                             stdin=json.dumps(rk).encode())
        self.assertEqual(rc, 1, err)

    def test_emit_with_s3_presigns_recording_key(self):
        rk = dict(seed_session())
        rk.pop("recording_url", None)
        rk["recording_key"] = "rec/abc.wav"
        rk["session_id"] = "s-presigned"
        rc, out, err = run_cli("emit", "-", "--partner", self.pid, "--db", self.d.db,
                               "--s3-endpoint", "https://s3.eu-west-1.amazonaws.com",
                               "--s3-region", "eu-west-1", "--s3-bucket", "recordings",
                               stdin=json.dumps(rk).encode(),
                               env={"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                                    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCY"})
        self.assertEqual(rc, 0, err)
        # Half an S3 configuration is a usage error naming what is missing.
        rc, _, err = run_cli("emit", "-", "--partner", self.pid, "--db", self.d.db,
                             "--s3-endpoint", "https://s3.eu-west-1.amazonaws.com",
                             stdin=json.dumps(rk).encode())
        self.assertEqual(rc, 2, err)
        self.assertIn("s3_region is missing", err)


def session_rendering_past_one_mib(session_id):
    """A session within the ingest's 1 MiB bound whose webhook payload is not: each of its
    10 000 user turns gains `"latency_ms":null` in the rendering (about 180 KB in all)."""
    s = dict(seed_session())
    s["session_id"] = session_id
    s["transcript"] = [{"role": "user", "content": "x" * 30,
                        "timestamp": "2026-03-15T14:30:06.000Z"}] * 10000
    return s


class PayloadBound(unittest.TestCase):
    """A webhook payload is a request body to its receiver, which refuses one past 1 MiB
    (vocohook receive, verify and validate do). A session whose rendering passes it was
    accepted and stored, then every attempt failed and GET /calls could not read it back."""

    def test_a_session_rendering_past_one_mib_is_refused_everywhere(self):
        big = session_rendering_past_one_mib("s-too-big")
        text = json.dumps(big, separators=(",", ":")).encode()
        self.assertLess(len(text) + 64, 1024 * 1024)  # the input is within its own bound
        rc, out, err = run_cli("render", "--timestamp", "2026-03-15T14:32:08.000Z", "-",
                               stdin=text)
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "")
        self.assertIn("larger than 1048576 bytes", err)

        with Daemon() as d:
            pid, key = create_partner(d.db)
            r = d.ingest(pid, big)
            self.assertEqual(r.status, 400, r)
            msg = r.json()["error"]["message"]
            self.assertTrue(msg.startswith("session: renders to a webhook payload larger than "
                                           "1048576 bytes"), msg)
            r = d.request("GET", "/api/v2/calls/s-too-big", key=key)
            self.assertEqual(r.status, 404, r)  # nothing stored
            # A session of the same shape that fits is taken, and read back.
            fits = dict(big, session_id="s-fits", transcript=big["transcript"][:8000])
            r = d.ingest(pid, fits)
            self.assertEqual(r.status, 202, r)
            r = d.request("GET", "/api/v2/calls/s-fits", key=key)
            self.assertEqual(r.status, 200, r)
            rc, out, err = run_cli("emit", "-", "--partner", pid, "--db", d.db, stdin=text)
            self.assertEqual(rc, 1, err)
            self.assertIn("session: renders to a webhook payload larger than", err)


if __name__ == "__main__":
    unittest.main()
