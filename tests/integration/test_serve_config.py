"""`vocohook serve` configuration: an INI file (--config or VOCOHOOK_CONFIG), VOCOHOOK_*
variables over it, flags over both; errors name file:line, the variable or the flag, and
exit 2 (3 for I/O: an unreadable file, a store that cannot open, a port in use)."""
import os
import shutil
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import Daemon  # noqa: E402


class Config(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="vh-config-")
        self.ini = os.path.join(self.tmp, "serve.ini")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_ini(self, text):
        with open(self.ini, "w", encoding="utf-8") as f:
            f.write(text)

    def fails(self, args=(), env=None, listen="127.0.0.1:0", ingest_token=True):
        """Runs serve expecting it to refuse to start: returns (exit code, stderr)."""
        d = Daemon(args, env=env, listen=listen, ingest_token=ingest_token, tmp=self.tmp)
        d.start(expect_listening=False)
        try:
            rc = d.wait_exit(20)
        finally:
            d.kill()
        self.assertEqual(d.out.text(), "")  # never claimed to listen
        return rc, d.err.text()

    def test_file_settings_apply_and_flags_override_them(self):
        self.write_ini(f"""; vocohook serve
[serve]
listen = 127.0.0.1:0
db = sqlite:{self.tmp}/from-ini.db
body_max = 1KiB
log_level = warn
""")
        # No --listen and no --db: both come from the file.
        d = Daemon(["--config", self.ini], listen=None, db=None, tmp=self.tmp)
        d.start()
        try:
            self.assertEqual(d.host, "127.0.0.1")
            body = b"x" * 1500
            r = d.request("POST", "/internal/v1/sessions", body=body, key=d.token,
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 413, r)
            d.stop()
            self.assertTrue(os.path.exists(os.path.join(self.tmp, "from-ini.db")))
            self.assertNotIn("request", [x["msg"] for x in d.log_records()])  # log_level warn
        finally:
            d.kill()

        # The same file, with flags on top: a bigger body bound and info logs.
        d = Daemon(["--config", self.ini, "--body-max", "2KiB", "--log-level", "info"],
                   listen=None, db=None, tmp=self.tmp)
        d.start()
        try:
            r = d.request("POST", "/internal/v1/sessions", body=b"x" * 1500, key=d.token,
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, r)  # read, then refused as bad JSON
            d.stop()
            self.assertIn("request", [x["msg"] for x in d.log_records()])
        finally:
            d.kill()

    def test_environment_overrides_the_file_and_names_the_config(self):
        self.write_ini("body_max = 1KiB\nlog_level = warn\n")
        d = Daemon(env={"VOCOHOOK_CONFIG": self.ini, "VOCOHOOK_BODY_MAX": "4KiB"}, tmp=self.tmp)
        d.start()
        try:
            r = d.request("POST", "/internal/v1/sessions", body=b"x" * 3000, key=d.token,
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, r)
            r = d.request("POST", "/internal/v1/sessions", body=b"x" * 5000, key=d.token,
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 413, r)
            d.stop()
        finally:
            d.kill()

    def test_ingest_token_from_the_file(self):
        token = "file-token-0123456789abcdef"
        self.write_ini(f"ingest_token = {token}\n")
        d = Daemon(["--config", self.ini], ingest_token=None, tmp=self.tmp)
        d.start()
        try:
            r = d.request("POST", "/internal/v1/sessions", body=b"{}", key=token,
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, r)  # past the token check
            r = d.request("POST", "/internal/v1/sessions", body=b"{}", key=token + "x",
                          headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 401, r)
            d.stop()
            self.assertNotIn(token, d.err.text())
        finally:
            d.kill()

    def test_bad_file_names_file_and_line(self):
        self.write_ini("[serve]\nlisten = 127.0.0.1:0\n\nretry_schedule = 0,4s,2q\n")
        rc, err = self.fails(["--config", self.ini])
        self.assertEqual(rc, 2, err)
        self.assertIn(f"{self.ini}:4: retry_schedule: schedule: step 3: expected a delay", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)

        self.write_ini("listen = 127.0.0.1:0\nthis line is wrong\n")
        rc, err = self.fails(["--config", self.ini])
        self.assertEqual(rc, 2, err)
        self.assertIn(f"{self.ini}:2:", err)

        self.write_ini("[serve]\ncolour = blue\n")
        rc, err = self.fails(["--config", self.ini])
        self.assertEqual(rc, 2, err)
        self.assertIn(f"{self.ini}:2: colour: unknown setting", err)

    def test_missing_file_is_an_io_error(self):
        rc, err = self.fails(["--config", os.path.join(self.tmp, "nope.ini")])
        self.assertEqual(rc, 3, err)
        self.assertIn("nope.ini", err)

    def test_bad_flags_and_variables(self):
        rc, err = self.fails(["--timeout", "forever"])
        self.assertEqual(rc, 2, err)
        self.assertIn("--timeout:", err)
        rc, err = self.fails(["--retry-schedule", "1s,2s"])
        self.assertEqual(rc, 2, err)
        self.assertIn("--retry-schedule: the first delay must be 0", err)
        rc, err = self.fails(env={"VOCOHOOK_THREADS": "lots"})
        self.assertEqual(rc, 2, err)
        self.assertIn("VOCOHOOK_THREADS:", err)
        rc, err = self.fails(listen="localhost-ish:0")
        self.assertEqual(rc, 2, err)
        self.assertIn("--listen:", err)
        rc, err = self.fails(["--no-such-flag"])
        self.assertEqual(rc, 2, err)
        rc, err = self.fails(["stray-argument"])
        self.assertEqual(rc, 2, err)
        rc, err = self.fails(ingest_token="short")
        self.assertEqual(rc, 2, err)
        self.assertIn("VOCOHOOK_INGEST_TOKEN:", err)
        self.assertNotIn("short", err.replace("VOCOHOOK_INGEST_TOKEN", ""))
        rc, err = self.fails(["--s3-endpoint", "https://s3.example.com"])
        self.assertEqual(rc, 2, err)
        self.assertIn("s3_region is missing", err)

    def test_s3_settings_that_cannot_presign_stop_the_start(self):
        # They were taken, and then every ingest with a recording_key was refused with a
        # 400 that blamed the producer ("session.bucket: ..."), storing nothing.
        keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID", "AWS_SECRET_ACCESS_KEY": "s3cr3t-v4lue"}
        for args, want in (
                (["--s3-endpoint", "https://s3.example.com", "--s3-region", "us-east-1",
                  "--s3-bucket", "b"], "s3: bucket: must be 3-63 characters"),
                (["--s3-endpoint", "https://s3.example.com/prefix", "--s3-region", "us-east-1",
                  "--s3-bucket", "recordings"], "s3: endpoint: must not have a path"),
                (["--s3-endpoint", "http://127.0.0.1:9000", "--s3-region", "us-east-1",
                  "--s3-bucket", "recordings"], "s3: endpoint: an IP address host needs path-"),
                (["--s3-endpoint", "https://s3.example.com", "--s3-region", "us.east",
                  "--s3-bucket", "recordings"], "s3: region: must be")):
            rc, err = self.fails(args, env=keys)
            self.assertEqual(rc, 2, err)
            self.assertIn(want, err)
            self.assertNotIn("s3cr3t-v4lue", err)
        d = Daemon(["--s3-endpoint", "http://127.0.0.1:9000", "--s3-region", "us-east-1",
                    "--s3-bucket", "recordings", "--s3-path-style"], env=keys, tmp=self.tmp)
        d.start()
        d.stop()

    def test_delivery_threads_run_under_the_chosen_policy(self):
        # /proc/PID/task/TID/stat field 41 is the policy: 0 SCHED_OTHER, 3 SCHED_BATCH.
        def policies(pid):
            out = {}
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/comm") as f:
                        comm = f.read().strip()
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except FileNotFoundError:
                    continue  # a thread that ended meanwhile
                out.setdefault(comm, set()).add(int(fields[38]))  # field 41, after "pid (comm)"
            return out

        delivery = {"vh-dispatch", "vh-engine"}
        for args, env, want, name in (((), None, 3, "batch"),
                                      (("--sched", "normal"), None, 0, "normal"),
                                      ((), {"VOCOHOOK_SCHED": "normal"}, 0, "normal")):
            d = Daemon(list(args), env=env, tmp=self.tmp)
            d.start()
            try:
                # Each delivery thread names itself, then sets its policy: await both.
                deadline = time.monotonic() + 10
                got = policies(d.proc.pid)
                while any(got.get(t) != {want} for t in delivery):
                    self.assertLess(time.monotonic(), deadline, got)
                    time.sleep(0.01)
                    got = policies(d.proc.pid)
                self.assertTrue(delivery <= set(got), got)
                for comm, pols in got.items():
                    self.assertEqual(pols, {want if comm in delivery else 0}, (comm, got))
                d.stop()
                listening = [x for x in d.log_records() if x["msg"] == "listening"]
                self.assertEqual(listening[0]["sched"], name)
            finally:
                d.kill()
        rc, err = self.fails(env={"VOCOHOOK_SCHED": "fifo"})
        self.assertEqual(rc, 2, err)
        self.assertIn("VOCOHOOK_SCHED: expected batch or normal, got 'fifo'", err)

    def test_ingest_token_is_not_a_flag(self):
        rc, err = self.fails(["--ingest-token", "0123456789abcdef0123"])
        self.assertEqual(rc, 2, err)
        self.assertNotIn("0123456789abcdef0123", err)

    def test_io_failures_exit_3(self):
        rc, err = self.fails(["--db", f"sqlite:{self.tmp}/no/such/dir/db"])
        self.assertEqual(rc, 3, err)
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        try:
            port = holder.getsockname()[1]
            rc, err = self.fails(listen=f"127.0.0.1:{port}")
            self.assertEqual(rc, 3, err)
            self.assertIn(f"127.0.0.1:{port}", err)
        finally:
            holder.close()
        rc, err = self.fails(["--ca-file", os.path.join(self.tmp, "missing.pem")])
        self.assertEqual(rc, 3, err)

    def test_one_serve_per_sqlite_file(self):
        # Claims live in the serving process's memory: a second serve on the same file
        # would send the same deliveries, so it refuses to start (exit 3) and says why; it
        # starts once the first one has stopped.
        first = Daemon(tmp=self.tmp).start()
        try:
            rc, err = self.fails()
            self.assertEqual(rc, 3, err)
            self.assertIn("one vocohook serve per SQLite file", err)
            self.assertIn(f"{self.tmp}/db-lock", err)
            self.assertEqual(first.request("GET", "/healthz").status, 200)
        finally:
            first.stop()
        second = Daemon(tmp=self.tmp).start()
        second.stop()

    def test_ipv6_loopback(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
        except OSError:
            self.skipTest("no ::1")
        d = Daemon(listen="[::1]:0", tmp=self.tmp)
        d.start()
        try:
            self.assertEqual(d.host, "[::1]")
            d.host = "::1"  # http.client wants the bare address
            self.assertEqual(d.request("GET", "/healthz").status, 200)
            d.stop()
        finally:
            d.kill()


if __name__ == "__main__":
    unittest.main()
