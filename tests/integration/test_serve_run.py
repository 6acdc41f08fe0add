"""`make run` (scripts/run): the first start creates ./var, a partner and an ingest token
kept in ./var/credentials (mode 0600), prints them with three curl commands, says it runs
with --allow-http --allow-private-networks, and serves; later starts reprint the same
credentials, unless `vocohook partner rotate-key` has killed the saved key: then it makes a
new one, so what it prints always works. Run in a copy of the tree layout, on an ephemeral
port."""
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import (LISTENING, SEED_SESSION, SOURCE_DIR, START_TIMEOUT, STOP_TIMEOUT,  # noqa: E402
                    VOCOHOOK, Daemon, Lines, clean_env, parse_fields, run_cli)


class RunScript(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="vh-run-")
        os.makedirs(os.path.join(self.root, "scripts"))
        os.makedirs(os.path.join(self.root, "build"))
        os.makedirs(os.path.join(self.root, "tests", "data", "good"))
        shutil.copy(os.path.join(SOURCE_DIR, "scripts", "run"),
                    os.path.join(self.root, "scripts", "run"))
        os.symlink(os.path.abspath(VOCOHOOK), os.path.join(self.root, "build", "vocohook"))
        shutil.copy(SEED_SESSION, os.path.join(self.root, "tests", "data", "good"))

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def start(self):
        """Starts scripts/run; returns (process, stdout Lines, stderr Lines, port)."""
        p = subprocess.Popen(["bash", os.path.join(self.root, "scripts", "run")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=clean_env({"VOCOHOOK_RUN_LISTEN": "127.0.0.1:0"}))
        out, err = Lines(p.stdout), Lines(p.stderr)
        line = out.wait_for(LISTENING.match, START_TIMEOUT)
        if line is None:
            p.kill()
            p.wait()
            self.fail(f"scripts/run did not start\nstdout:\n{out.text()}\nstderr:\n{err.text()}")
        return p, out, err, int(LISTENING.match(line).group(2))

    def stop(self, p):
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=STOP_TIMEOUT), 0)

    def daemon(self, port):
        """A Daemon handle on the port scripts/run serves, for its request helpers."""
        d = Daemon(tmp=self.root)
        d.host, d.port = "127.0.0.1", port
        return d

    def creds(self):
        with open(os.path.join(self.root, "var", "credentials")) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)

    def test_first_start_then_restart(self):
        p, out, err, port = self.start()
        try:
            text = out.text()
            self.assertIn("--allow-http", text)
            self.assertIn("--allow-private-networks", text)
            self.assertIn("local try-out", text)
            key = re.search(r"API key\s+(rg_live_[0-9a-f]{64})", text).group(1)
            token = re.search(r"ingest token\s+(\S+)", text).group(1)
            self.assertEqual(len(re.findall(r"^\s+curl ", text, re.M)), 3, text)
            self.assertEqual(text.count(key), 3)    # shown, and in two curl commands
            self.assertEqual(text.count(token), 2)  # shown, and in the ingest command

            creds = os.path.join(self.root, "var", "credentials")
            self.assertEqual(stat.S_IMODE(os.stat(creds).st_mode), 0o600)

            # What the three curl commands do, on the real port.
            d = self.daemon(port)
            r = d.request("POST", "/api/v2/config/webhooks", key=key,
                          body={"label": "local", "url": "http://127.0.0.1:9000/webhook"})
            self.assertEqual(r.status, 201, r)  # http:// accepted: --allow-http
            self.assertEqual(d.request("GET", "/api/v2/config/webhooks", key=key).status, 200)
            with open(os.path.join(self.root, "var", "demo_ingest.json"), "rb") as f:
                r = d.request("POST", "/internal/v1/sessions", body=f.read(), key=token,
                              headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 202, r)
        finally:
            self.stop(p)
        for needle in (key, token):
            self.assertNotIn(needle, err.text())

        # A second start prints the same credentials and creates nothing.
        p, out, err, port = self.start()
        try:
            self.assertIn(key, out.text())
            self.assertIn(token, out.text())
            self.assertNotIn("created now", out.text())
            self.assertNotIn("rotated", out.text() + err.text())
        finally:
            self.stop(p)

    def test_a_key_rotated_since_is_replaced_not_printed(self):
        # Found in review: after `vocohook partner rotate-key` on the demo partner, the
        # saved key was dead but still printed on every start, in the curl commands too.
        p, out, _, _ = self.start()
        self.stop(p)
        saved = self.creds()
        db = "sqlite:" + os.path.join(self.root, "var", "vocohook.db")
        rc, rotated_out, rot_err = run_cli("partner", "rotate-key", saved["partner_id"],
                                           "--db", db)
        self.assertEqual(rc, 0, rot_err)
        rotated = parse_fields(rotated_out)["api_key"]

        p, out, err, port = self.start()
        try:
            text = out.text()
            key = re.search(r"API key\s+(rg_live_[0-9a-f]{64})", text).group(1)
            self.assertNotEqual(key, saved["api_key"])
            self.assertEqual(text.count(key), 3, text)  # shown, and in two curl commands
            self.assertNotIn(saved["api_key"], text)
            self.assertIn("the saved one had been rotated", text)
            self.assertIn("no longer works", err.text())
            self.assertNotIn(key, err.text())
            d = self.daemon(port)
            self.assertEqual(d.request("GET", "/api/v2/config/webhooks", key=key).status, 200)
            for dead in (saved["api_key"], rotated):  # rotate-key's key is replaced too
                self.assertEqual(d.request("GET", "/api/v2/config/webhooks",
                                           key=dead).status, 401)
        finally:
            self.stop(p)
        now = self.creds()
        self.assertEqual(now, dict(saved, api_key=key))  # same partner and token, new key


if __name__ == "__main__":
    unittest.main()
