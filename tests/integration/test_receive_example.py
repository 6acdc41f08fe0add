"""examples/receiver_example.c, the program docs/receiving.md walks through: built against
the shared library alone, it must say 200 for a request signed here with Python's hmac,
401 with the reason for a forged or stale one, 400 for a signed payload that breaks the
contract."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from recv_harness import SECRET, payload, sign  # noqa: E402
from server import DATA, clean_env  # noqa: E402

BINARY_DIR = os.environ.get("VH_BINARY_DIR", "build")
EXAMPLE = os.path.join(BINARY_DIR, "examples", "receiver_example")
NOW = "2026-03-15T14:32:09.000Z"


class Example(unittest.TestCase):
    def run_example(self, body, ts, sig, secrets=(SECRET,), now=NOW):
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(body)
        try:
            args = [EXAMPLE] + (["--now", now] if now else []) + [f.name, ts, sig]
            p = subprocess.run(args, capture_output=True, timeout=30,
                               env=clean_env({"VOCOHOOK_SECRETS": ",".join(secrets)}))
        finally:
            os.unlink(f.name)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_valid(self):
        body = payload("s1234567-abcd-1234-abcd-123456789012",
                       "https://b.s3.amazonaws.com/r.wav?X-Amz-Expires=86400")
        h = sign(body, ts="2026-03-15T14:32:08.000Z")
        rc, out, err = self.run_example(body, h["X-Webhook-Timestamp"],
                                        h["X-Webhook-Signature"], secrets=("whsec_x", SECRET))
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[0], "200 valid")
        self.assertIn("session_id: s1234567-abcd-1234-abcd-123456789012", out)
        self.assertIn("agent:      Sales Assistant", out)
        self.assertIn("duration:   127 s, 2.12 credits, 3 turns", out)
        self.assertIn("call:       +14155551234 -> +919876543210, completed", out)

    def test_newer_sender(self):
        with open(os.path.join(DATA, "good", "payload_newer_sender.json"), "rb") as f:
            body = f.read()
        h = sign(body, ts=NOW)
        rc, out, _ = self.run_example(body, h["X-Webhook-Timestamp"], h["X-Webhook-Signature"])
        self.assertEqual((rc, out.splitlines()[0]), (0, "200 valid"))

    def test_refused(self):
        body = payload("s1")
        h = sign(body, ts=NOW)
        ts, sig = h["X-Webhook-Timestamp"], h["X-Webhook-Signature"]
        cases = [
            (body + b" ", ts, sig, "401 mismatch: "),
            (body, ts, sig.replace("sha256=", "sha1="), "401 bad_signature: "),
            (body, ts[:-1], sig, "401 bad_timestamp: "),
        ]
        for b, t, s, want in cases:
            rc, out, _ = self.run_example(b, t, s)
            self.assertEqual(rc, 1, out)
            self.assertTrue(out.startswith(want), out)
        rc, out, _ = self.run_example(body, ts, sig, now="2026-03-15T15:00:00.000Z")
        self.assertTrue(out.startswith("401 too_old: "), out)
        bad = json.loads(body)
        bad["data"]["call"]["status"] = "ringing"
        bad = json.dumps(bad).encode()
        h = sign(bad, ts=NOW)
        rc, out, _ = self.run_example(bad, h["X-Webhook-Timestamp"], h["X-Webhook-Signature"])
        self.assertEqual(rc, 1)
        self.assertTrue(out.startswith("400 data.call.status: "), out)

    def test_usage(self):
        p = subprocess.run([EXAMPLE], capture_output=True, env=clean_env(), timeout=30)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
