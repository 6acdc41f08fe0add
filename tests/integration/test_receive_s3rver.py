"""Recording downloads by `vocohook receive` from a real S3-compatible server: s3rver (npm),
started here on loopback by tests/integration/s3/serve.js, with URLs presigned by
`vocohook presign`.

What s3rver checks of a presigned GET: the query parameters are all there, the access key
exists (S3RVER), and X-Amz-Date + X-Amz-Expires is not past (403 "Request has expired").
It does not recompute the SigV4 signature; the AWS example vector in the unit tests covers
that arithmetic. It has no access control either, so the object is uploaded here with a
plain unsigned PUT (s3rver treats a request without any auth parameters as anonymous).

serve.js prints one `request METHOD URL STATUS` line per answered request: the test counts
the receiver's GETs from the server's side. The node modules are installed once with
`npm ci` from the committed package-lock.json when they are missing.
"""
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(__file__))
from recv_harness import Receiver, now_iso, payload  # noqa: E402
from server import (LISTENING, SOURCE_DIR, START_TIMEOUT, STOP_TIMEOUT, Lines,  # noqa: E402
                    run_cli)

S3_DIR = os.path.join(SOURCE_DIR, "tests", "integration", "s3")
BUCKET = "vh-recordings"
ACCESS_KEY = SECRET_KEY = "S3RVER"  # s3rver's one built-in key pair
DEV = ["--allow-http", "--allow-private-networks"]
FINAL = {"done", "failed", "expired"}
NPM_TIMEOUT = 300
REQUEST = re.compile(r"^request (\S+) (\S+) (\d{3})$")


def blob(n, seed=b"s3rver"):
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def ensure_node_modules():
    """`npm ci` in tests/integration/s3 unless s3rver is installed there already. A lock
    in the temporary directory keeps two test runs (two build trees) from installing into
    the same folder at once."""
    if not (shutil.which("node") and shutil.which("npm")):
        raise unittest.SkipTest("node and npm are needed to run s3rver (apt install nodejs npm)")
    marker = os.path.join(S3_DIR, "node_modules", "s3rver", "package.json")
    lock_name = "vh-s3rver-npm-%s.lock" % hashlib.sha256(S3_DIR.encode()).hexdigest()[:16]
    with open(os.path.join(tempfile.gettempdir(), lock_name), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(marker):
            return
        t0 = time.monotonic()
        try:
            p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=S3_DIR,
                               capture_output=True, timeout=NPM_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"npm ci in {S3_DIR} took over {NPM_TIMEOUT}s")
        out = p.stdout.decode() + "\n" + p.stderr.decode()
        if p.returncode != 0 and any(code in out for code in NETWORK_ERRORS):
            # The registry could not be reached: infrastructure, not the product. Say so
            # loudly; a broken lockfile or package still fails below.
            raise unittest.SkipTest(f"npm registry unreachable, s3rver not installed:\n{out}")
        if p.returncode != 0 or not os.path.exists(marker):
            raise AssertionError(f"npm ci in {S3_DIR} exited {p.returncode}:\n{out}")
        print(f"npm ci in {S3_DIR}: {time.monotonic() - t0:.1f}s", file=sys.stderr)


NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET",
                  "ENETUNREACH")


def setUpModule():
    ensure_node_modules()


class S3rver:
    """`node serve.js --bucket BUCKET` on 127.0.0.1 with an ephemeral port."""

    def __init__(self, buckets=(BUCKET,)):
        self.argv = ["node", os.path.join(S3_DIR, "serve.js")]
        for b in buckets:
            self.argv += ["--bucket", b]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.argv, cwd=S3_DIR, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        line = self.out.wait_for(LISTENING.match, START_TIMEOUT)
        if line is None:
            self.kill()
            raise AssertionError(f"s3rver did not start: {self.argv}\n{self.err.text()}")
        self.port = int(LISTENING.match(line).group(2))
        self.endpoint = f"http://127.0.0.1:{self.port}"
        return self

    def stop(self):
        """SIGTERM, a clean exit, and every request line read (stdout at EOF)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"s3rver ignored SIGTERM\n{self.err.text()}")
        if not self.out.wait_eof(STOP_TIMEOUT):
            raise AssertionError("s3rver's stdout stayed open after it exited")
        if rc != 0:
            raise AssertionError(f"s3rver exited {rc}\n{self.err.text()}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def requests(self, method=None, path=None):
        """(method, url, status) of every answered request, optionally one method/path."""
        out = []
        for line in self.out.text().splitlines():
            m = REQUEST.match(line)
            if m and (method is None or m.group(1) == method) and \
                    (path is None or m.group(2).split("?")[0] == path):
                out.append((m.group(1), m.group(2), int(m.group(3))))
        return out

    def put(self, key, data):
        """Uploads an object with an unsigned PUT (s3rver's anonymous access)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("PUT", f"/{BUCKET}/{key}", body=data,
                      headers={"Content-Type": "audio/wav"})
            r = c.getresponse()
            body = r.read()
        finally:
            c.close()
        if r.status != 200:
            raise AssertionError(f"PUT {key}: {r.status} {body[:300]!r}")

    def get(self, url):
        """GET of a full URL on this server -> (status, body)."""
        parts = urlsplit(url)
        c = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            c.request("GET", parts.path + "?" + parts.query)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


def presign(endpoint, key, *extra, access_key=ACCESS_KEY):
    """`vocohook presign` for BUCKET/key, path-style, the secret key in the environment."""
    rc, out, err = run_cli("presign", "--s3-endpoint", endpoint, "--bucket", BUCKET,
                           "--key", key, "--path-style", "--region", "us-east-1",
                           "--access-key", access_key, *extra,
                           env={"AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    if rc != 0:
        raise AssertionError(f"vocohook presign exited {rc}: {err}")
    return out.strip()


def path_and_query(url):
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


class S3rverDownloads(unittest.TestCase):
    def setUp(self):
        self.s3 = S3rver().start()
        self.addCleanup(self.s3.kill)

    def test_presigned_url_is_downloaded(self):
        data = blob(300_000)
        key = "calls/2026/11/rec-1.wav"
        self.s3.put(key, data)
        url = presign(self.s3.endpoint, key, "--expires", "3600")
        q = parse_qs(urlsplit(url).query)
        self.assertTrue(q["X-Amz-Credential"][0].startswith("S3RVER/"), url)

        # The server really checks query auth: the same request with an unknown key is
        # refused, so the 200 below means the receiver's request carried a valid one.
        status, body = self.s3.get(presign(self.s3.endpoint, key, "--expires", "3600",
                                           access_key="NOTAKEY"))
        self.assertEqual(status, 403)
        self.assertIn(b"InvalidAccessKeyId", body)

        sid = "s3000001-abcd-1234-abcd-123456789012"
        with Receiver(DEV, recordings=True) as r:
            resp = r.deliver(payload(sid, url))
            self.assertEqual(resp.status, 200, resp)
            job = r.wait_job(sid, FINAL, timeout=60)
            self.assertEqual(job["state"], "done", job)
            self.assertEqual(job["attempts"], 1)
            self.assertEqual(job["path"], os.path.join(r.recordings, sid + ".wav"))
            self.assertEqual(job["size"], len(data))
            self.assertEqual(job["sha256"], hashlib.sha256(data).hexdigest())
            with open(job["path"], "rb") as f:
                self.assertEqual(f.read(), data)
            self.assertEqual(os.stat(job["path"]).st_mode & 0o777, 0o600)
            self.assertEqual(r.temp_files(), [])
            self.assertEqual(r.export()[sid]["recording"], "downloaded")
            rc, out, err = r.cli("sessions", "show", sid)
            self.assertEqual(rc, 0, err)
            rec = next(line for line in out.splitlines() if line.startswith("recording"))
            self.assertIn("downloaded", rec)
            self.assertIn(job["path"], rec)
            self.assertIn(hashlib.sha256(data).hexdigest()[:4], rec)
        self.s3.stop()
        gets = self.s3.requests("GET", f"/{BUCKET}/{key}")
        # the control GET with the unknown key, then the receiver's one, sent unchanged
        self.assertEqual(len(gets), 2, gets)
        self.assertEqual(gets[1], ("GET", path_and_query(url), 200))

    def test_expired_url_ends_expired_after_one_403(self):
        data = blob(10_000, b"expired")
        key = "calls/2026/11/rec-2.wav"
        self.s3.put(key, data)
        signed_at = now_iso(-2 * 3600)  # signed two hours ago, for 60 s
        url = presign(self.s3.endpoint, key, "--expires", "60", "--at", signed_at)
        sid = "s3000002-abcd-1234-abcd-123456789012"
        with Receiver(DEV, recordings=True) as r:
            resp = r.deliver(payload(sid, url))
            self.assertEqual(resp.status, 200, resp)
            job = r.wait_job(sid, FINAL, timeout=60)
            self.assertEqual(job["state"], "expired", job)
            self.assertEqual((job["attempts"], job["status"]), (1, 403))
            self.assertEqual(r.export()[sid]["recording"], "expired")
            self.assertEqual(os.listdir(r.recordings), [])
        # The receiver is stopped, then s3rver: the count is final, nothing in flight.
        self.s3.stop()
        gets = self.s3.requests("GET", f"/{BUCKET}/{key}")
        self.assertEqual(gets, [("GET", path_and_query(url), 403)])


if __name__ == "__main__":
    unittest.main()
