"""`vocohook sign` and `vocohook verify` against an independent HMAC (Python's hmac)."""
import hashlib
import hmac
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from cli import DATA, run, write_temp  # noqa: E402

TS = "2026-03-15T14:32:08.000Z"
SECRET = "whsec_" + "ab" * 32


def py_sign(secret: str, ts: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headers(out: bytes):
    lines = out.decode().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("X-Webhook-Timestamp: "), lines
    assert lines[1].startswith("X-Webhook-Signature: "), lines
    return lines[0].split(": ", 1)[1], lines[1].split(": ", 1)[1]


class SignVerify(unittest.TestCase):
    def setUp(self):
        rc, body, err = run("render", "--timestamp", TS,
                            os.path.join(DATA, "good", "seed_session.json"))
        self.assertEqual(rc, 0, err)
        self.body = body
        self.path = write_temp(body)

    def tearDown(self):
        os.unlink(self.path)

    def verify(self, secret, ts, sig, path, *extra):
        return run("verify", "--secret", secret, "--timestamp", ts, "--signature", sig,
                   "--now", TS, *extra, path)

    def test_sign_matches_python_hmac(self):
        for secret in (SECRET, "s", "ünïcødé-secret", "x" * 1024):
            rc, out, err = run("sign", "--secret", secret, "--timestamp", TS, self.path)
            self.assertEqual(rc, 0, err)
            ts, sig = headers(out)
            self.assertEqual(ts, TS)
            self.assertEqual(sig, py_sign(secret, TS, self.body))

    def test_an_empty_secret_is_a_usage_error(self):
        # It was exit 1 with "vocohook sign: sign: the secret is empty": a rejected input,
        # where the command line itself is what is wrong.
        rc, out, err = run("sign", "--secret", "", "--timestamp", TS, self.path)
        self.assertEqual((rc, out), (2, b""), err)
        self.assertIn("--secret (or VOCOHOOK_SECRET) is required, and not empty", err)
        rc, out, err = run("sign", "--timestamp", TS, self.path, env={"VOCOHOOK_SECRET": ""})
        self.assertEqual((rc, out), (2, b""), err)

    def test_binary_and_empty_bodies(self):
        for body in (b"", os.urandom(3000), b"\x00\xff\n\r", b"{}"):
            path = write_temp(body)
            try:
                rc, out, err = run("sign", "--secret", SECRET, "--timestamp", TS, path)
                self.assertEqual(rc, 0, err)
                self.assertEqual(headers(out)[1], py_sign(SECRET, TS, body))
                rc, _, err = self.verify(SECRET, TS, py_sign(SECRET, TS, body), path)
                self.assertEqual(rc, 0, err)
            finally:
                os.unlink(path)

    def test_stdin_and_env_secret(self):
        rc, out, err = run("sign", "--timestamp", TS, "-", stdin=self.body,
                           env={"VOCOHOOK_SECRET": SECRET})
        self.assertEqual(rc, 0, err)
        self.assertEqual(headers(out)[1], py_sign(SECRET, TS, self.body))

    def test_python_signature_verifies(self):
        rc, out, err = self.verify(SECRET, TS, py_sign(SECRET, TS, self.body), self.path)
        self.assertEqual((rc, out), (0, b"valid\n"), err)

    def test_any_one_byte_change_fails(self):
        sig = py_sign(SECRET, TS, self.body)
        # Every byte position of the body (the seed body is ~1 KB), flipped one at a time.
        for i in range(0, len(self.body), 7):
            tampered = bytearray(self.body)
            tampered[i] ^= 0x01
            path = write_temp(bytes(tampered))
            try:
                rc, _, err = self.verify(SECRET, TS, sig, path)
            finally:
                os.unlink(path)
            self.assertEqual(rc, 1, f"byte {i} changed but verify passed")
            self.assertIn("does not match", err)
        # The timestamp: a different (still valid) instant.
        rc, _, err = self.verify(SECRET, "2026-03-15T14:32:08.001Z", sig, self.path)
        self.assertEqual(rc, 1)
        self.assertIn("does not match", err)
        # The secret: each byte changed.
        for i in range(len(SECRET)):
            bad = SECRET[:i] + chr(ord(SECRET[i]) ^ 1) + SECRET[i + 1:]
            rc, _, err = self.verify(bad, TS, sig, self.path)
            self.assertEqual(rc, 1, f"secret byte {i} changed but verify passed")
        # The signature itself.
        bad_sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        rc, _, err = self.verify(SECRET, TS, bad_sig, self.path)
        self.assertEqual(rc, 1)

    def test_rotation_accepts_either_secret(self):
        old, new = SECRET, "whsec_" + "cd" * 32
        sig = py_sign(new, TS, self.body)
        rc, _, err = run("verify", "--secret", old, "--secret", new, "--timestamp", TS,
                         "--signature", sig, "--now", TS, self.path)
        self.assertEqual(rc, 0, err)
        rc, _, err = run("verify", "--timestamp", TS, "--signature", sig, "--now", TS,
                         self.path, env={"VOCOHOOK_SECRETS": f"{old},{new}"})
        self.assertEqual(rc, 0, err)
        rc, _, err = run("verify", "--secret", old, "--timestamp", TS, "--signature", sig,
                         "--now", TS, self.path)
        self.assertEqual(rc, 1)

    def test_tolerance_window(self):
        sig = py_sign(SECRET, TS, self.body)
        # 300 s is the default; exactly at the edge passes, a millisecond past fails.
        rc, _, err = run("verify", "--secret", SECRET, "--timestamp", TS, "--signature", sig,
                         "--now", "2026-03-15T14:37:08.000Z", self.path)
        self.assertEqual(rc, 0, err)
        rc, _, err = run("verify", "--secret", SECRET, "--timestamp", TS, "--signature", sig,
                         "--now", "2026-03-15T14:37:08.001Z", self.path)
        self.assertEqual(rc, 1)
        rc, _, err = run("verify", "--secret", SECRET, "--timestamp", TS, "--signature", sig,
                         "--now", "2026-03-15T14:27:07.999Z", self.path)
        self.assertEqual(rc, 1)
        rc, _, err = run("verify", "--secret", SECRET, "--timestamp", TS, "--signature", sig,
                         "--tolerance", "off", "--now", "2030-01-01T00:00:00.000Z", self.path)
        self.assertEqual(rc, 0, err)
        # Without --now the real clock is used: a 2026-03 timestamp is far outside 300 s.
        rc, _, err = run("verify", "--secret", SECRET, "--timestamp", TS, "--signature", sig,
                         self.path)
        self.assertEqual(rc, 1)

    def test_malformed_headers(self):
        sig = py_sign(SECRET, TS, self.body)
        for ts in ("2026-03-15T14:32:08Z", "2026-03-15T14:32:08.000+00:00", "", "1773585128"):
            rc, _, err = self.verify(SECRET, ts, sig, self.path)
            self.assertEqual(rc, 1, ts)
        for bad in ("", "sha256=", sig.upper().replace("SHA256", "sha1"), " " + sig,
                    sig + "0", sig[:-1], "sha256=" + "g" * 64):
            rc, _, err = self.verify(SECRET, TS, bad, self.path)
            self.assertEqual(rc, 1, bad)
            self.assertTrue(err.strip(), bad)
            self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_usage_errors_exit_2(self):
        self.assertEqual(run("sign", self.path)[0], 2)  # no secret
        self.assertEqual(run("sign", "--secret", SECRET, "--timestamp", "yesterday",
                             self.path)[0], 2)
        self.assertEqual(run("verify", "--secret", SECRET, self.path)[0], 2)
        self.assertEqual(run("sign", "--secret", SECRET)[0], 2)
        self.assertEqual(run("nonsense")[0], 2)
        self.assertEqual(run("sign", "--secret", SECRET, "/nonexistent/file")[0], 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
