"""Recording downloads by `vocohook receive`: fetched from a local HTTP server started here,
retried until the URL's own expiry, never left half-written under the final name, resumed
after a kill -9."""
import datetime
import hashlib
import os
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from recv_harness import (FileServer, Receiver, make_tmp, payload, wait_past,  # noqa: E402
                          wait_until)
from server import VOCOHOOK, clean_env  # noqa: E402

DEV = ["--allow-http", "--allow-private-networks"]


def blob(n, seed=b"rec"):
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def amz_query(signed_at, expires_s):
    return (f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={signed_at:%Y%m%dT%H%M%SZ}"
            f"&X-Amz-Expires={expires_s}&X-Amz-SignedHeaders=host&X-Amz-Signature=00")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class Downloads(unittest.TestCase):
    def setUp(self):
        self.data = blob(300_000)
        self.fs = FileServer({"/rec/a.wav": self.data})

    def tearDown(self):
        self.fs.close()

    def check_file(self, r, job, sid, data, ext=".wav"):
        self.assertEqual(job["state"], "done")
        self.assertEqual(job["path"], os.path.join(r.recordings, sid + ext))
        self.assertEqual(job["size"], len(data))
        self.assertEqual(job["sha256"], hashlib.sha256(data).hexdigest())
        with open(job["path"], "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.stat(job["path"]).st_mode & 0o777, 0o600)
        self.assertEqual(r.temp_files(), [])

    def test_download(self):
        with Receiver(DEV, recordings=True) as r:
            self.assertEqual(r.deliver(payload("s_ok", self.fs.url("/rec/a.wav"))).status, 200)
            job = r.wait_job("s_ok", {"done", "failed", "expired"})
            self.check_file(r, job, "s_ok", self.data)
            self.assertEqual(job["attempts"], 1)
            self.assertEqual(r.export()["s_ok"]["recording"], "downloaded")

    def test_fails_three_times_then_succeeds(self):
        def behave(h, path, n):
            if n <= 3:
                self.fs.send_status(h, 503 if n % 2 else 500)
            else:
                self.fs.send_file(h, path)
        self.fs.behave = behave
        with Receiver(DEV, recordings=True) as r:
            r.deliver(payload("s_retry", self.fs.url("/rec/a.wav")))
            job = r.wait_job("s_retry", {"done", "failed", "expired"}, timeout=60)
            self.check_file(r, job, "s_retry", self.data)
            self.assertEqual(job["attempts"], 4)
            self.assertEqual(self.fs.hits["/rec/a.wav"], 4)

    def test_403_past_expiry_is_expired_after_one_try(self):
        self.fs.behave = lambda h, path, n: self.fs.send_status(h, 403, b"<Error>expired</Error>")
        signed = utcnow() - datetime.timedelta(days=2)
        url = self.fs.url("/rec/a.wav", amz_query(signed, 3600))
        with Receiver(DEV, recordings=True) as r:
            r.deliver(payload("s_expired", url))
            job = r.wait_job("s_expired", {"done", "failed", "expired"})
            self.assertEqual(job["state"], "expired")
            self.assertEqual((job["attempts"], job["status"]), (1, 403))
            self.assertEqual(self.fs.hits["/rec/a.wav"], 1)
            self.assertEqual(r.export()["s_expired"]["recording"], "expired")
            self.assertEqual(os.listdir(r.recordings), [])

    def test_403_before_expiry_is_retried_until_it(self):
        self.fs.behave = lambda h, path, n: self.fs.send_status(h, 403)
        url = self.fs.url("/rec/a.wav", amz_query(utcnow(), 4))
        with Receiver(DEV, recordings=True) as r:
            r.deliver(payload("s_403", url))
            job = r.wait_job("s_403", {"done", "failed", "expired"}, timeout=30)
            self.assertEqual(job["state"], "expired")
            self.assertGreaterEqual(job["attempts"], 2)
            self.assertEqual(self.fs.hits["/rec/a.wav"], job["attempts"])

    def test_a_link_at_the_temporary_name_is_not_followed(self):
        # Found in review (session 21): the temporary file was opened with O_TRUNC and no
        # O_NOFOLLOW, so a symbolic link planted under its name by anyone who can write to
        # the recordings directory had the receiver truncate and fill the file it names.
        victim = os.path.join(make_tmp(), "victim.txt")
        with open(victim, "wb") as f:
            f.write(b"keep me")
        with Receiver(DEV, recordings=True) as r:
            os.symlink(victim, os.path.join(r.recordings, ".vh-s_link.wav.part"))
            r.deliver(payload("s_link", self.fs.url("/rec/a.wav")))
            job = wait_until(lambda: (j := r.job("s_link")) and j["attempts"] >= 1 and j,
                             30, "the first attempt")
            with open(victim, "rb") as f:
                self.assertEqual(f.read(), b"keep me")
            self.assertNotEqual(job["state"], "done")
            self.assertIn(".vh-s_link.wav.part", job["error"])
        self.assertEqual(self.fs.hits.get("/rec/a.wav", 0), 0)

    def test_truncated_transfer_is_never_done(self):
        def behave(h, path, n):
            h.send_response(200)
            h.send_header("Content-Length", str(len(self.data)))
            h.end_headers()
            h.wfile.write(self.data[: len(self.data) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
        self.fs.behave = behave
        with Receiver(DEV, recordings=True) as r:
            r.deliver(payload("s_trunc", self.fs.url("/rec/a.wav")))
            job = wait_until(lambda: (j := r.job("s_trunc")) and j["attempts"] >= 2 and j,
                             30, "two truncated attempts")
            self.assertEqual(job["state"], "pending")
            self.assertTrue(job["error"])
            self.assertFalse(os.path.exists(os.path.join(r.recordings, "s_trunc.wav")))
            self.assertEqual(r.export()["s_trunc"]["recording"], "pending")

    def test_kill_9_during_a_slow_download_then_restart(self):
        big = blob(2 * 1024 * 1024, b"big")
        self.fs.files["/rec/big.wav"] = big

        def behave(h, path, n):
            if n > 1:
                self.fs.send_file(h, path)
                return
            h.send_response(200)
            h.send_header("Content-Length", str(len(big)))
            h.end_headers()
            try:
                for i in range(0, len(big), 16384):
                    h.wfile.write(big[i:i + 16384])
                    h.wfile.flush()
                    self.fs.started.set()
                    time.sleep(0.05)
            except OSError:
                pass  # the receiver died mid-transfer, as intended
        self.fs.behave = behave
        r = Receiver(DEV, recordings=True).start()
        try:
            r.deliver(payload("s_slow", self.fs.url("/rec/big.wav")))
            self.assertTrue(self.fs.started.wait(20))
            wait_until(lambda: any(os.path.getsize(os.path.join(r.recordings, t)) > 0
                                   for t in r.temp_files()), 20, "a partial temporary file")
            t0 = time.monotonic()
            resp = r.deliver(payload("s_during", None))  # answered at once meanwhile
            self.assertEqual(resp.status, 200)
            self.assertLess(time.monotonic() - t0, 1.0)
            r.kill()  # SIGKILL
            self.assertEqual(len(r.temp_files()), 1)
            self.assertFalse(os.path.exists(os.path.join(r.recordings, "s_slow.wav")))
        finally:
            r.kill()
        r2 = Receiver(DEV, recordings=True, tmp=r.tmp)
        with r2:
            job = r2.wait_job("s_slow", {"done", "failed", "expired"}, timeout=30)
            self.check_file(r2, job, "s_slow", big)
            self.assertEqual(self.fs.hits["/rec/big.wav"], 2)
            self.assertEqual(r2.count(), 2)
        self.assertIn("resumed jobs", r2.err.text())
        self.assertIn("removed temporary files", r2.err.text())

    def test_presigned_url_from_vocohook_presign(self):
        key_data = blob(50_000, b"presigned")
        env = clean_env({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                         "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"})
        endpoint = f"http://127.0.0.1:{self.fs.port}"
        p = subprocess.run([VOCOHOOK, "presign", "--s3-endpoint", endpoint, "--bucket", "bkt",
                            "--key", "calls/k.wav", "--path-style", "--region", "us-east-1",
                            "--expires", "3600"],
                           capture_output=True, env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        url = p.stdout.decode().strip()
        self.fs.files["/bkt/calls/k.wav"] = key_data
        seen = {}

        def behave(h, path, n):
            from urllib.parse import parse_qs, urlsplit
            q = parse_qs(urlsplit(h.path).query)
            signed = datetime.datetime.strptime(q["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
            expires = int(q["X-Amz-Expires"][0])
            seen["expiry"] = signed.replace(tzinfo=datetime.timezone.utc) + \
                datetime.timedelta(seconds=expires)
            if utcnow() > seen["expiry"]:
                self.fs.send_status(h, 403)
            else:
                self.fs.send_file(h, path)
        self.fs.behave = behave
        with Receiver(DEV, recordings=True) as r:
            r.deliver(payload("s_presigned", url))
            job = r.wait_job("s_presigned", {"done", "failed", "expired"})
            self.check_file(r, job, "s_presigned", key_data)
            self.assertEqual(job["expires_at"],
                             seen["expiry"].strftime("%Y-%m-%dT%H:%M:%S.000Z"))

    def test_downloads_go_before_queued_commands(self):
        # One worker, and a command that runs until the test lets it end (a file named for
        # its session appears). Claimed in the order they fell due, the jobs of s1..s4 ran
        # s1's download, then s1's command, and s2..s4's downloads waited behind it: with
        # slow commands and a burst of sessions, later links expired before their turn.
        # Every due download goes first.
        out = make_tmp("vh-rec-order-")
        cmd = ('echo "$VOCOHOOK_SESSION_ID" >> "$OUT/ran"; '
               'while [ ! -e "$OUT/go-$VOCOHOOK_SESSION_ID" ]; do sleep 0.05; done')
        sids = [f"s_order{i}" for i in range(5)]
        for sid in sids:
            self.fs.files[f"/rec/{sid}.wav"] = self.data

        def ran():
            try:
                with open(os.path.join(out, "ran")) as f:
                    return f.read().split()
            except FileNotFoundError:
                return []

        def release(sid):
            open(os.path.join(out, "go-" + sid), "w").close()

        def deliver(r, sid):
            self.assertEqual(r.deliver(payload(sid, self.fs.url(f"/rec/{sid}.wav"))).status, 200)

        args = DEV + ["--workers", "1", "--exec", cmd]
        with Receiver(args, recordings=True, env={"OUT": out}) as r:
            deliver(r, sids[0])
            wait_until(lambda: ran() == sids[:1], 30, "the first command")
            # The worker is held by s0's command while s1..s4 arrive, each with both jobs.
            for sid in sids[1:]:
                deliver(r, sid)
            release(sids[0])
            wait_until(lambda: len(ran()) == 2, 30, "a second command")
            states = {sid: r.job(sid)["state"] for sid in sids}
            self.assertEqual(states, dict.fromkeys(sids, "done"),
                             "downloads waited behind a command")
            self.assertEqual(ran(), sids[:2])
            for sid in sids[1:]:
                release(sid)
            for sid in sids:
                job = r.wait_job(sid, {"done", "failed"}, kind="exec")
                self.assertEqual((job["state"], job["attempts"]), ("done", 1))
                self.check_file(r, r.job(sid), sid, self.data)

    def test_restart_without_recordings_leaves_downloads_pending(self):
        # A download planned while --recordings was on, then a restart without it: the job
        # used to run with no directory, writing "(null)/.vh-<name>.part" relative to the
        # working directory, and retried that until the URL expired.
        self.fs.behave = lambda h, path, n: self.fs.send_status(h, 503)
        r = Receiver(DEV, recordings=True)
        with r:
            r.deliver(payload("s_nodir", self.fs.url("/rec/a.wav")))
            wait_until(lambda: (r.job("s_nodir") or {}).get("attempts", 0) >= 1, 30,
                       "a first failed attempt")
        self.fs.behave = None
        cwd = os.getcwd()
        os.chdir(r.tmp)
        try:
            os.makedirs("(null)", exist_ok=True)
            # Without --recordings, and with --exec: once the old download is due, a new
            # session's exec job, due after it, runs; so the download was passed over.
            with Receiver(DEV + ["--exec", "true"], tmp=r.tmp) as bare:
                wait_past(bare.job("s_nodir")["next_attempt_at"])
                self.assertEqual(bare.deliver(payload("s_later")).status, 200)
                job = bare.wait_job("s_later", {"done", "failed"}, kind="exec")
                self.assertEqual(job["state"], "done")
                job = bare.job("s_nodir")
                self.assertEqual((job["state"], job["attempts"]), ("pending", 1), job)
            self.assertEqual(os.listdir("(null)"), [])
        finally:
            os.chdir(cwd)
        with Receiver(DEV, tmp=r.tmp, recordings=True) as again:
            job = again.wait_job("s_nodir", {"done", "failed", "expired"})
            self.check_file(again, job, "s_nodir", self.data)


class Refusals(unittest.TestCase):
    def setUp(self):
        self.fs = FileServer({"/rec/a.wav": blob(4096)})

    def tearDown(self):
        self.fs.close()

    def final(self, r, sid):
        return r.wait_job(sid, {"done", "failed", "expired"})

    def test_private_address_refused_by_default(self):
        with Receiver(["--allow-http"], recordings=True) as r:
            r.deliver(payload("s_private", self.fs.url("/rec/a.wav")))
            job = self.final(r, "s_private")
            self.assertEqual((job["state"], job["attempts"]), ("failed", 1))
            self.assertIn("not a public address", job["error"])
            self.assertEqual(self.fs.hits, {})

    def test_http_refused_by_default(self):
        with Receiver(["--allow-private-networks"], recordings=True) as r:
            r.deliver(payload("s_http", self.fs.url("/rec/a.wav")))
            job = self.final(r, "s_http")
            self.assertEqual(job["state"], "failed")
            self.assertIn("https", job["error"])
            self.assertEqual(self.fs.hits, {})

    def test_recording_over_the_cap(self):
        with Receiver(DEV + ["--recording-max", "1KiB"], recordings=True) as r:
            r.deliver(payload("s_big", self.fs.url("/rec/a.wav")))
            job = self.final(r, "s_big")
            self.assertEqual(job["state"], "failed")
            self.assertIn("larger than 1024 bytes", job["error"])
            self.assertEqual(os.listdir(r.recordings), [])

    def test_no_url_and_no_directory(self):
        with Receiver(DEV, recordings=True) as r:
            r.deliver(payload("s_none", None))
            self.assertEqual(r.export()["s_none"]["recording"], "none")
            self.assertEqual(r.export()["s_none"]["jobs"], [])
        with Receiver(DEV) as r:
            r.deliver(payload("s_skip", self.fs.url("/rec/a.wav")))
            self.assertEqual(r.export()["s_skip"]["recording"], "skipped")
            self.assertEqual(self.fs.hits, {})


if __name__ == "__main__":
    unittest.main()
