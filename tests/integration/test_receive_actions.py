"""`vocohook receive --exec CMD` and `--forward URL`: each event once, retried, recorded."""
import concurrent.futures
import hashlib
import hmac
import http.server
import os
import resource
import sqlite3
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from recv_harness import (SECRET, Receiver, make_tmp, payload, wait_past,  # noqa: E402
                          wait_until)


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

    def test_commands_inherit_no_other_attempts_files(self):
        # Each attempt puts its payload and output in temporary files that must not reach
        # another worker's command. They were made with mkstemp and marked close-on-exec
        # only afterwards, so a command spawned by another worker in between inherited them
        # (another session's payload): a race, hit a few times in a few hundred attempts.
        out = make_tmp("vh-exec-fds-")
        # written aside, then renamed: a file in the listing is complete
        cmd = ('ls -l /proc/self/fd/ > "$OUT/.$VOCOHOOK_SESSION_ID" && '
               'mv "$OUT/.$VOCOHOOK_SESSION_ID" "$OUT/$VOCOHOOK_SESSION_ID"')
        n = 300
        with Receiver(["--exec", cmd, "--workers", "8"], env={"OUT": out}) as r:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(lambda i: r.deliver(payload(f"s_fd{i}")).status,
                                      range(n)))
            self.assertEqual(codes, [200] * n)
            done = lambda: [f for f in os.listdir(out) if not f.startswith(".")]  # noqa: E731
            wait_until(lambda: len(done()) >= n, 120, "every command")
        leaked = []
        for name in sorted(done()):
            with open(os.path.join(out, name)) as f:
                for line in f:
                    # "... 5 -> /tmp/vocohook-exec-XXXXXX (deleted)": only stdin (the payload)
                    # may be one of our files, and only stdout and stderr (the output, here
                    # stderr alone) a socket: another worker's output, or a connection
                    fd = line.split(" -> ")[0].split()[-1]
                    if (("vocohook-exec-" in line and fd != "0") or
                            ("socket:" in line and fd not in ("1", "2"))):
                        leaked.append((name, line.strip()))
        self.assertEqual(leaked, [])

    def test_failing_command_is_retried_then_failed(self):
        with Receiver(["--exec", "echo broken >&2; exit 3", "--action-attempts", "2"]) as r:
            r.deliver(payload("s_fail"))
            job = r.wait_job("s_fail", {"done", "failed"}, kind="exec", timeout=30)
            self.assertEqual((job["state"], job["attempts"], job["status"]), ("failed", 2, 3))
            self.assertEqual(job["error"], "exited with status 3: broken")

    def test_a_commands_output_that_is_not_utf8_is_kept_cleaned(self):
        # Found in session 19: a command printing bytes that are not UTF-8 (or a cut inside a
        # character) put them into the job's error as they were, and `sessions export` then
        # failed at that session ("invalid input") and exported nothing after it.
        cmd = "printf 'caf\\351\\033[2J \\303\\251'; exit 3"
        with Receiver(["--exec", cmd, "--action-attempts", "1"]) as r:
            r.deliver(payload("s_bytes"))
            r.deliver(payload("s_after"))
            job = r.wait_job("s_bytes", {"failed"}, kind="exec", timeout=30)
            self.assertEqual(job["error"], "exited with status 3: caf? [2J \u00e9")
            self.assertEqual(r.wait_job("s_after", {"failed"}, kind="exec", timeout=30)["error"],
                             job["error"])
            # An inbox an older version wrote may hold the bytes as they came: read, they
            # are cleaned the same way.
            con = sqlite3.connect(r.db, timeout=10)
            with con:
                con.execute("UPDATE jobs SET error = CAST(? AS TEXT) WHERE kind = 'exec'",
                            (b"old caf\xe9\x1b[2J",))
            con.close()
            self.assertEqual(r.job("s_after", kind="exec")["error"], "old caf? [2J")

    def test_a_commands_output_is_read_not_kept(self):
        # The output went to a temporary file with no bound: a command printing without end
        # filled the disk until its timeout. Here the receiver (and so each command) runs
        # with a file size limit of 8 MiB, and the command prints 32 MiB: written to a file,
        # it was "killed by signal 25" (SIGXFSZ) at 8 MiB.
        limit = 8 << 20
        cmd = "head -c 33554432 /dev/zero | tr '\\0' x || exit 4; exit 3"
        with Receiver(["--exec", cmd, "--action-attempts", "1"],
                      preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                         (limit, limit))) as r:
            r.deliver(payload("s_loud"))
            job = r.wait_job("s_loud", {"done", "failed"}, kind="exec", timeout=60)
            self.assertEqual((job["state"], job["status"]), ("failed", 3))
            # the first 160 bytes of the output, as for any failure
            self.assertEqual(job["error"], "exited with status 3: " + "x" * 160)

    def test_a_command_done_is_done_though_its_background_process_holds_the_output(self):
        # The output is read until the command exits, not until every holder of it closes
        # it: `sleep` keeps it open for 5 s after the shell has exited 0.
        with Receiver(["--exec", "sleep 5 & exit 0", "--action-timeout", "3s"]) as r:
            r.deliver(payload("s_bg"))
            job = r.wait_job("s_bg", {"done", "failed"}, kind="exec", timeout=30)
            self.assertEqual((job["state"], job["attempts"]), ("done", 1))

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

    def test_restart_without_exec_leaves_its_jobs_pending(self):
        # A job planned while --exec was on outlives a restart without it: the receiver must
        # keep running (it used to claim the job and spawn a NULL command: SIGSEGV at every
        # start), and the job must wait for a start that has --exec again.
        out = make_tmp("vh-exec-restart-")
        r = Receiver(["--exec", "exit 3", "--action-attempts", "5"], env={"OUT": out})
        with r:
            self.assertEqual(r.deliver(payload("s_noexec")).status, 200)
            wait_until(lambda: (r.job("s_noexec", "exec") or {}).get("attempts", 0) >= 1, 30,
                       "a first failed attempt")
        sink = Sink()
        try:
            # Without --exec, and with --forward: once the old exec job is due, a new
            # session's forward job, due after it, runs; so the old one was passed over.
            with Receiver(["--forward", sink.url], tmp=r.tmp) as bare:
                wait_past(bare.job("s_noexec", "exec")["next_attempt_at"])
                self.assertEqual(bare.deliver(payload("s_later")).status, 200)
                job = bare.wait_job("s_later", {"done", "failed"}, kind="forward")
                self.assertEqual(job["state"], "done")
                self.assertIsNone(bare.proc.poll(), bare.err.text())
                job = bare.job("s_noexec", "exec")
                self.assertEqual((job["state"], job["attempts"]), ("pending", 1))
        finally:
            sink.close()
        cmd = 'cat > "$OUT/$VOCOHOOK_SESSION_ID.json"'
        with Receiver(["--exec", cmd], tmp=r.tmp, env={"OUT": out}) as again:
            job = again.wait_job("s_noexec", {"done", "failed"}, kind="exec", timeout=30)
            self.assertEqual((job["state"], job["attempts"]), ("done", 2))

    def test_restart_without_forward_leaves_its_jobs_pending(self):
        sink = Sink(statuses=(500, 200))
        try:
            r = Receiver(["--forward", sink.url])
            with r:
                r.deliver(payload("s_nofwd"))
                wait_until(lambda: (r.job("s_nofwd", "forward") or {}).get("attempts", 0) >= 1,
                           30, "a first failed attempt")
            # Without --forward, and with --exec: once the old forward job is due, a new
            # session's exec job, due after it, runs; so the old one was passed over.
            with Receiver(["--exec", "true"], tmp=r.tmp) as bare:
                wait_past(bare.job("s_nofwd", "forward")["next_attempt_at"])
                self.assertEqual(bare.deliver(payload("s_later")).status, 200)
                job = bare.wait_job("s_later", {"done", "failed"}, kind="exec")
                self.assertEqual(job["state"], "done")
                job = bare.job("s_nofwd", "forward")
                self.assertEqual((job["state"], job["attempts"]), ("pending", 1), job)
        finally:
            sink.close()


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
