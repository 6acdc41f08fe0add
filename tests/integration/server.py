"""Harness for the tests that drive the real daemon.

`Daemon` starts `vocohook serve --listen 127.0.0.1:0 --db sqlite:<tmp>/db` as a process
with VOCOHOOK_INGEST_TOKEN set, waits for the `listening on HOST:PORT` line it prints on
stdout, makes HTTP requests with http.client, and stops it with SIGTERM, asserting a clean
exit. Every wait is a condition with a deadline; ports are always ephemeral, so tests can
run in parallel.
"""
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

VOCOHOOK = os.environ.get("VOCOHOOK", "build/vocohook")
SOURCE_DIR = os.environ.get("VH_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SOURCE_DIR, "tests", "data")
SEED_SESSION = os.path.join(DATA, "good", "seed_session.json")

START_TIMEOUT = 20  # seconds; generous for sanitizer builds on a busy machine
STOP_TIMEOUT = 10
LISTENING = re.compile(r"^listening on (\S+):(\d+)$")


def clean_env(extra=None):
    """The caller's environment without any vocohook or AWS setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VOCOHOOK_") and not k.startswith("AWS_")}
    env.update(extra or {})
    return env


def run_cli(*args, env=None, stdin=None, timeout=60):
    """Runs `vocohook ARGS` to completion; returns (exit code, stdout text, stderr text)."""
    p = subprocess.run([VOCOHOOK, *args], input=stdin, capture_output=True,
                       env=clean_env(env), timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def parse_fields(text):
    """`key: value` lines -> dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def create_partner(db, name="acme"):
    """`vocohook partner create NAME --db DB` -> (partner id, API key)."""
    rc, out, err = run_cli("partner", "create", name, "--db", db)
    if rc != 0:
        raise AssertionError(f"partner create exited {rc}: {err}")
    fields = parse_fields(out)
    return fields["partner_id"], fields["api_key"]


def new_token():
    return "itok_" + secrets.token_hex(24)


class Lines:
    """Lines read from a pipe by a thread; waiters block on a condition, with a deadline."""

    def __init__(self, pipe):
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for raw in iter(pipe.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()
        pipe.close()

    def wait_for(self, predicate, timeout):
        """The first line satisfying `predicate`, or None at EOF or when `timeout` passes."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    return None
                self.cond.wait(left)

    def wait_eof(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.eof, timeout)

    def text(self):
        with self.cond:
            return "\n".join(self.lines)


class Daemon:
    """One `vocohook serve` process over its own temporary directory."""

    def __init__(self, args=(), env=None, ingest_token=True, listen="127.0.0.1:0", db=True,
                 tmp=None):
        """`args` are extra flags. `ingest_token`: True for a fresh random one, None for
        none, or the token. `listen`/`db`: None leaves the flag out (the config decides);
        db=True is a SQLite file in the temporary directory."""
        self.own_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix="vh-serve-")
        self.db = f"sqlite:{self.tmp}/db" if db is True else db
        self.token = new_token() if ingest_token is True else ingest_token
        self.argv = [VOCOHOOK, "serve"]
        if listen:
            self.argv += ["--listen", listen]
        if self.db:
            self.argv += ["--db", self.db]
        self.argv += list(args)
        extra = dict(env or {})
        if self.token:
            extra["VOCOHOOK_INGEST_TOKEN"] = self.token
        self.env = clean_env(extra)
        self.proc = None
        self.host = self.port = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, expect_listening=True):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env)
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        if not expect_listening:
            return self
        line = self.out.wait_for(LISTENING.match, START_TIMEOUT)
        if line is None:
            self.kill()
            raise AssertionError(f"vocohook serve did not start: {self.argv}\n"
                                 f"stdout:\n{self.out.text()}\nstderr:\n{self.err.text()}")
        m = LISTENING.match(line)
        self.host, self.port = m.group(1), int(m.group(2))
        return self

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """The exit code once the process ends (and its pipes are drained)."""
        rc = self.proc.wait(timeout=timeout)
        self.out.wait_eof(timeout)
        self.err.wait_eof(timeout)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends `sig` and returns (exit code, seconds it took); asserts a clean exit."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"vocohook serve did not exit within {timeout}s of {sig!r}\n"
                                 f"stderr:\n{self.err.text()}")
        took = time.monotonic() - t0
        if rc != 0:
            raise AssertionError(f"vocohook serve exited {rc} after {sig!r}\n"
                                 f"stderr:\n{self.err.text()}")
        return rc, took

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def cleanup(self):
        self.kill()
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is None and self.proc.poll() is None:
            self.stop()
        self.cleanup()
        return False

    # -- HTTP -----------------------------------------------------------------------------

    def connect(self, timeout=10):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, key=None, conn=None, timeout=10):
        """One request -> Response. `key` sets `Authorization: Bearer KEY`; a dict or list
        body is sent as JSON."""
        hdrs = dict(headers or {})
        if key:
            hdrs["Authorization"] = f"Bearer {key}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        own = conn is None
        c = conn or self.connect(timeout)
        try:
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            if own:
                c.close()

    def ingest(self, partner_id, session, token=None):
        return self.request("POST", "/internal/v1/sessions",
                            body={"partner_id": partner_id, "session": session},
                            key=token or self.token)

    def raw_socket(self, timeout=10):
        return socket.create_connection((self.host, self.port), timeout=timeout)

    # -- logs -------------------------------------------------------------------------------

    def log_records(self):
        """Every stderr line, parsed as JSON (a line that is not JSON fails the test)."""
        out = []
        for line in self.err.text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"log line is not JSON: {line!r}")
        return out

    def wait_log(self, predicate, timeout=10):
        """The first log record (parsed) satisfying `predicate`, or None after `timeout`."""
        def match(line):
            try:
                return predicate(json.loads(line))
            except ValueError:
                return False
        line = self.err.wait_for(match, timeout)
        return json.loads(line) if line is not None else None


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def read_until_closed(sock, timeout):
    """Reads until the peer closes; returns (bytes, seconds). Raises socket.timeout."""
    sock.settimeout(timeout)
    t0 = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - t0


def post_whole_body(conn, path, headers, body):
    """POSTs `body` as http.client does: the head and the whole body, and only then reads the
    answer (as most clients do; curl and the engine read while they send). Returns
    (Response, whether the server said it closes the connection). The client's send buffer
    is kept small (64 KiB), so that kernel buffers cannot hide a server that stops reading:
    a body of several MiB is sent only if the server reads (or drops) it."""
    conn.connect()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    closes = r.will_close
    conn.close()
    return resp, closes


def seed_session():
    with open(SEED_SESSION, "rb") as f:
        return json.loads(f.read())
