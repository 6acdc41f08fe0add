"""The CLI against the seed contract: render reproduces the seed's example byte for byte,
validate rejects every file of the bad-input corpus with its exact "path: reason" line."""
import csv
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from cli import DATA, run, write_temp  # noqa: E402

SEED_TS = "2026-03-15T14:32:08.000Z"
MODES = {"event": "event", "event-lenient": "receiver", "session": "session",
         "ingest": "ingest"}


def manifest():
    with open(os.path.join(DATA, "bad", "MANIFEST.tsv"), newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r and not r[0].startswith("#")]
    return rows


class Contract(unittest.TestCase):
    def test_seed_renders_to_the_seed(self):
        rc, out, err = run("render", "--timestamp", SEED_TS,
                           os.path.join(DATA, "good", "seed_session.json"))
        self.assertEqual(rc, 0, err)
        with open(os.path.join(DATA, "good", "seed_payload.compact.json"), "rb") as f:
            want = f.read()
        self.assertEqual(out, want)
        # And independently: the seed document's example, compacted by Python's json.
        with open(os.path.join(DATA, "good", "seed_payload.json"), "rb") as f:
            seed = json.loads(f.read())
        self.assertEqual(out, json.dumps(seed, separators=(",", ":"),
                                         ensure_ascii=False).encode())

    def test_render_output_validates(self):
        rc, out, err = run("render", os.path.join(DATA, "good", "seed_session.json"))
        self.assertEqual(rc, 0, err)
        path = write_temp(out)
        try:
            rc, stdout, err = run("validate", path)
            self.assertEqual(rc, 0, err)
            self.assertIn(b"ok", stdout)
            # render without --timestamp uses the clock: the body's timestamp is current
            ts = json.loads(out)["timestamp"]
            self.assertRegex(ts, r"^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\d\dZ$")
        finally:
            os.unlink(path)

    def test_seed_payload_validates_in_every_mode(self):
        payload = os.path.join(DATA, "good", "seed_payload.json")
        for mode in ("event", "receiver"):
            rc, _, err = run("validate", "--as", mode, payload)
            self.assertEqual(rc, 0, f"{mode}: {err}")
        rc, _, err = run("validate", "--as", "session",
                         os.path.join(DATA, "good", "seed_session.json"))
        self.assertEqual(rc, 0, err)

    def test_bad_corpus_each_rejected_with_its_reason(self):
        rows = manifest()
        self.assertGreaterEqual(len(rows), 40)
        for row in rows:
            name, mode, _cls, message = row[0], row[1], row[2], row[3]
            with self.subTest(file=name):
                rc, out, err = run("validate", "--as", MODES[mode],
                                   os.path.join(DATA, "bad", name))
                self.assertEqual(rc, 1, f"{name}: exit {rc}, stderr {err!r}")
                self.assertEqual(err.rstrip("\n"), message, name)
                self.assertEqual(out, b"")

    def test_render_rejects_bad_sessions_with_the_same_reason(self):
        for row in manifest():
            name, mode, message = row[0], row[1], row[3]
            if mode != "session":
                continue
            with self.subTest(file=name):
                rc, out, err = run("render", "--timestamp", SEED_TS,
                                   os.path.join(DATA, "bad", name))
                self.assertEqual(rc, 1, name)
                self.assertEqual(err.rstrip("\n"), message, name)
                self.assertEqual(out, b"")

    def test_oversize_input_is_rejected_not_read_forever(self):
        path = write_temp(b" " * (1024 * 1024 + 1))
        try:
            rc, _, err = run("validate", path)
            self.assertEqual(rc, 1)
            self.assertIn("larger than 1048576 bytes", err)
        finally:
            os.unlink(path)


class Presign(unittest.TestCase):
    # The example of AWS's "Authenticating Requests: Using Query Parameters" page.
    AWS_URL = ("https://examplebucket.s3.amazonaws.com/test.txt"
               "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
               "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
               "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
               "&X-Amz-Signature="
               "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")

    def test_aws_example(self):
        rc, out, err = run("presign", "--url", "https://examplebucket.s3.amazonaws.com/test.txt",
                           "--region", "us-east-1", "--access-key", "AKIAIOSFODNN7EXAMPLE",
                           "--secret-key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                           "--at", "2013-05-24T00:00:00.000Z")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.decode().strip(), self.AWS_URL)

    def test_credentials_from_environment_and_bucket_form(self):
        env = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
               "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
        rc, out, err = run("presign", "--s3-endpoint", "https://s3.amazonaws.com",
                           "--bucket", "examplebucket", "--key", "test.txt",
                           "--region", "us-east-1", "--at", "2013-05-24T00:00:00.000Z", env=env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.decode().strip(), self.AWS_URL)

    def test_errors(self):
        rc, _, err = run("presign", "--url", "ftp://x/y", "--region", "r", "--access-key", "a",
                         "--secret-key", "k")
        self.assertEqual(rc, 1)
        self.assertTrue(err.startswith("vocohook presign: url"), err)
        rc, _, _ = run("presign", "--url", "https://x/y", "--region", "r")  # no keys
        self.assertEqual(rc, 2)
        rc, _, _ = run("presign", "--url", "https://x/y", "--region", "r", "--access-key", "a",
                       "--secret-key", "k", "--expires", "604801")
        self.assertEqual(rc, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
