"""Harness for the tests that drive `vocohook receive` as a real process.

`Receiver` starts `vocohook receive --listen 127.0.0.1:0 --db <tmp>/inbox.db` with the
secrets in VOCOHOOK_SECRETS, waits for its `listening on HOST:PORT` line, and stops it with
SIGTERM (asserting exit 0) or SIGKILL. Requests are signed here, with Python's hmac, never
with vocohook itself. `FileServer` is a local HTTP server for recordings whose behaviour
each test chooses (fail N times, 403, truncate, go slowly). Every wait is a condition with
a deadline; ports are ephemeral.
"""
import atexit
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from server import (DATA, LISTENING, START_TIMEOUT, STOP_TIMEOUT, VOCOHOOK,  # noqa: E402
                    Lines, clean_env)

SECRET = "whsec_" + "ab" * 32
SEED_PAYLOAD = os.path.join(DATA, "good", "seed_payload.compact.json")


_TMP_DIRS = []
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TMP_DIRS])


def make_tmp(prefix="vh-recv-"):
    """A temporary directory removed when the test process exits (receivers restart on
    the same one, so it outlives each Receiver)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _TMP_DIRS.append(d)
    return d


def iso(dt):
    """A datetime as the contract's exact timestamp form."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def now_iso(shift_s=0):
    return iso(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=shift_s))


def sign(body, secret=SECRET, ts=None):
    """The two webhook headers for `body` (bytes), computed independently of vocohook."""
    ts = ts or now_iso()
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": "sha256=" + mac,
            "Content-Type": "application/json"}


def payload(session_id="s1234567-abcd-1234-abcd-123456789012", recording_url=None, **data):
    """The seed payload (compact JSON bytes) with another session id and recording URL."""
    with open(SEED_PAYLOAD, "rb") as f:
        p = json.loads(f.read())
    p["data"]["session_id"] = session_id
    p["data"]["recording_url"] = recording_url
    p["data"].update(data)
    return json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode()


def wait_until(predicate, timeout, what="condition", interval=0.05):
    """Polls `predicate` until it returns a true value (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_past(stamp, timeout=30):
    """Waits until the wall clock is past `stamp` (an ISO 8601 time, as the export gives)."""
    t = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    wait_until(lambda: datetime.datetime.now(datetime.timezone.utc) > t, timeout,
               f"the clock past {stamp}")


class Response:
    def __init__(self, status, body, headers=None):
        self.status = status
        self.body = body
        self.headers = headers or {}  # lower-cased names

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


class Receiver:
    """One `vocohook receive` process over a temporary directory (kept across restarts)."""

    def __init__(self, args=(), secrets=(SECRET,), tmp=None, env=None, recordings=False,
                 preexec=None):
        self.tmp = tmp or make_tmp()
        self.preexec = preexec  # run in the child before exec (a resource limit, say)
        self.db = os.path.join(self.tmp, "inbox.db")
        self.recordings = None
        self.args = list(args)
        if recordings:
            self.recordings = os.path.join(self.tmp, "recordings")
            os.makedirs(self.recordings, exist_ok=True)
            self.args += ["--recordings", self.recordings]
        extra = dict(env or {})
        if secrets:
            extra["VOCOHOOK_SECRETS"] = ",".join(secrets)
        self.env = clean_env(extra)
        self.proc = None
        self.port = None

    def start(self):
        argv = [VOCOHOOK, "receive", "--listen", "127.0.0.1:0", "--db", self.db, *self.args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env, preexec_fn=self.preexec)
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        line = self.out.wait_for(LISTENING.match, START_TIMEOUT)
        if line is None:
            self.kill()
            raise AssertionError(f"vocohook receive did not start: {argv}\n"
                                 f"stderr:\n{self.err.text()}")
        self.port = int(LISTENING.match(line).group(2))
        return self

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"vocohook receive ignored {sig.name}\n{self.err.text()}")
        self.err.wait_eof(STOP_TIMEOUT)
        if rc != 0:
            raise AssertionError(f"vocohook receive exited {rc}\n{self.err.text()}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            if exc[0] is None:
                self.stop()
            else:
                self.kill()
        return False

    # -- HTTP ---------------------------------------------------------------------------

    def post(self, body, headers=None, path="/webhook", method="POST", timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return Response(r.status, r.read(), {k.lower(): v for k, v in r.getheaders()})
        finally:
            c.close()

    def deliver(self, body, secret=SECRET, ts=None, **kw):
        return self.post(body, sign(body, secret, ts), **kw)

    # -- the inbox ------------------------------------------------------------------------

    def rows(self, sql, args=()):
        """Rows of a query on the inbox, read with Python's own sqlite3 (read-only)."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def count(self):
        return self.rows("SELECT count(*) FROM sessions")[0][0]

    def cli(self, *args):
        """`vocohook ARGS --db <inbox>` -> (exit code, stdout text, stderr text)."""
        p = subprocess.run([VOCOHOOK, *args, "--db", self.db], capture_output=True,
                           env=clean_env(), timeout=60)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def export(self):
        """Every session, as `vocohook sessions export --format jsonl` gives it."""
        rc, out, err = self.cli("sessions", "export", "--format", "jsonl")
        if rc != 0:
            raise AssertionError(f"sessions export exited {rc}: {err}")
        return {s["session_id"]: s for s in map(json.loads, out.splitlines())}

    def job(self, session_id, kind="download"):
        s = self.export().get(session_id)
        if not s:
            return None
        return next((j for j in s["jobs"] if j["kind"] == kind), None)

    def wait_job(self, session_id, states, kind="download", timeout=30):
        """The job once its state is one of `states`."""
        def done():
            j = self.job(session_id, kind)
            return j if j and j["state"] in states else None
        return wait_until(done, timeout, f"{kind} job of {session_id} in {states}")

    def temp_files(self):
        return [n for n in os.listdir(self.recordings) if n.endswith(".part")]


class FileServer:
    """A local HTTP server for recordings. `behave(handler, path)` decides each answer; the
    default serves `files[path]`. `hits[path]` counts GETs."""

    def __init__(self, files=None):
        self.files = dict(files or {})
        self.hits = {}
        self.lock = threading.Lock()
        self.behave = None
        self.started = threading.Event()  # set when a body has started going out
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with outer.lock:
                    outer.hits[path] = outer.hits.get(path, 0) + 1
                    n = outer.hits[path]
                if outer.behave:
                    outer.behave(self, path, n)
                else:
                    outer.send_file(self, path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path, query=""):
        return f"http://127.0.0.1:{self.port}{path}{query}"

    def send_file(self, h, path):
        data = self.files.get(path)
        if data is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("Content-Type", "audio/wav")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def send_status(h, status, body=b"<Error/>"):
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
