"""`vocohook receive --exec CMD` and `--forward URL`: each event once, retried, recorded."""
import hashlib
import hmac
import http.server
import os
import sqlite3
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from recv_harness import SECRET, Receiver, make_tmp, payload, wait_until  # noqa: E402


class Sink:
    """A local HTTP server that records each POST; `statuses` are answered in turn."""

    def __init__(self, statuses=(200,)):
        self.posts = []
        self.statuses = list(statuses)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((self.path, dict(self.headers), body))
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Exec(unittest.TestCase):
    def test_command_gets_the_payload_on_stdin(self):
        out = make_tmp("vh-exec-")
        cmd = 'cat > "$OUT/$VOCOHOOK_SESSION_ID.json"; env > "$OUT/$VOCOHOOK_SESSION_ID.env"'
        with Receiver(["--exec", cmd], env={"OUT": out}, secrets=(SECRET, "whsec_second")) as r:
            body = payload("s_exec")
            self.assertEqual(r.deliver(body).status, 200)
            job = r.wait_job("s_exec", {"done", "failed"}, kind="exec")
            self.assertEqual((job["state"], job["attempts"]), ("done", 1))
        with open(os.path.join(out, "s_exec.json"), "rb") as f:
            self.assertEqual(f.read(), body)
        with open(os.path.join(out, "s_exec.env")) as f:
            env = f.read()
        self.assertIn("VOCOHOOK_SESSION_ID=s_exec\n", env)
        self.assertIn("VOCOHOOK_ATTEMPT=1\n", env)
        self.assertNotIn("VOCOHOOK_SECRETS", env)
        self.assertNotIn(SECRET, env)

    def test_failing_command_is_retried_then_failed(self):
        with Receiver(["--exec", "echo broken >&2; exit 3", "--action-attempts", "2"]) as r:
            r.deliver(payload("s_fail"))
            job = r.wait_job("s_fail", {"done", "failed"}, kind="exec", timeout=30)
            self.assertEqual((job["state"], job["attempts"], job["status"]), ("failed", 2, 3))
            self.assertEqual(job["error"], "exited with status 3: broken")

    def test_command_timeout(self):
        args = ["--exec", "sleep 30", "--action-timeout", "300ms", "--action-attempts", "1"]
        with Receiver(args) as r:
            r.deliver(payload("s_slow"))
            job = r.wait_job("s_slow", {"done", "failed"}, kind="exec", timeout=30)
            self.assertEqual(job["state"], "failed")
            self.assertIn("timed out", job["error"])

    def test_sigterm_cuts_a_running_command_short_and_it_runs_again(self):
        with Receiver(["--exec", "sleep 30"]) as r:
            r.deliver(payload("s_cut"))
            r.wait_job("s_cut", {"running"}, kind="exec")
        # stopped cleanly (exit 0) in well under the command's 30 s; the attempt did not count
        job = r.job("s_cut", "exec")
        self.assertEqual((job["state"], job["attempts"]), ("pending", 0))


    def test_an_attempt_whose_record_failed_is_recorded_once_the_inbox_takes_it(self):
        # Another process holds the inbox's write lock past the busy timeout (10 s) just as
        # the attempt ends: the record fails, and the job must not stay `running` until a
        # restart. The command runs once; its record lands once the lock is let go.
        out = make_tmp("vh-exec-lock-")
        gate = os.path.join(out, "gate")
        os.mkfifo(gate)
        cmd = 'echo run >> "$OUT/runs"; read line < "$OUT/gate"'
        with Receiver(["--exec", cmd], env={"OUT": out}) as r:
            self.assertEqual(r.deliver(payload("s_relock")).status, 200)
            wait_until(lambda: os.path.exists(os.path.join(out, "runs")), 30, "the command")
            con = sqlite3.connect(r.db, timeout=10, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                with open(gate, "w") as g:
                    g.write("go\n")
                failed = r.err.wait_for(lambda line: "recording a job failed" in line, 60)
                self.assertIsNotNone(failed, r.err.text())
                self.assertIn("database is locked", failed)
                # (read here: the CLI would wait for the lock, to check the schema)
                self.assertEqual(r.rows("SELECT state FROM jobs"), [("running",)])
            finally:
                con.execute("ROLLBACK")
                con.close()
            job = r.wait_job("s_relock", {"done", "failed"}, kind="exec", timeout=30)
            self.assertEqual((job["state"], job["attempts"]), ("done", 1))
        with open(os.path.join(out, "runs")) as f:
            self.assertEqual(f.read(), "run\n")


class Forward(unittest.TestCase):
    def test_forward_with_the_original_headers(self):
        sink = Sink()
        try:
            with Receiver(["--forward", sink.url]) as r:
                body = payload("s_fwd")
                r.deliver(body)
                job = r.wait_job("s_fwd", {"done", "failed"}, kind="forward")
                self.assertEqual(job["state"], "done")
            self.assertEqual(len(sink.posts), 1)
            path, headers, got = sink.posts[0]
            self.assertEqual((path, got), ("/hook", body))
            ts = headers["X-Webhook-Timestamp"]
            mac = hmac.new(SECRET.encode(), ts.encode() + b"." + got, hashlib.sha256).hexdigest()
            self.assertEqual(headers["X-Webhook-Signature"], "sha256=" + mac)
            self.assertEqual(headers["X-Vocohook-Session-Id"], "s_fwd")
        finally:
            sink.close()

    def test_forward_retried_until_2xx(self):
        sink = Sink(statuses=(500, 502, 204))
        try:
            with Receiver(["--forward", sink.url]) as r:
                r.deliver(payload("s_fwd2"))
                job = r.wait_job("s_fwd2", {"done", "failed"}, kind="forward", timeout=30)
                self.assertEqual((job["state"], job["attempts"]), ("done", 3))
            self.assertEqual(len(sink.posts), 3)
        finally:
            sink.close()


if __name__ == "__main__":
    unittest.main()
