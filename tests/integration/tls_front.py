"""TLS for the tests: a throw-away CA (`make_ca`), and `TlsFront`, nginx terminating TLS on
127.0.0.1 in front of a daemon's plain HTTP port, as docs/receiving.md tells users to deploy
(both servers speak plain HTTP only).

nginx is in scripts/install-deps (the benchmark sink); without it the tests that need it
are skipped. Its port is picked by binding port 0 and closing, so another process may take
it before nginx binds: nginx then exits with "Address already in use" and is started again
on another port. Readiness is nginx's own "start worker process" notice on stderr, awaited
with a deadline.
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import START_TIMEOUT, STOP_TIMEOUT, Lines  # noqa: E402

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def ossl(d, *args):
    """Runs the openssl CLI in directory `d`; raises if it fails."""
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)


def new_ca(d, name, cn):
    """A self-signed CA: NAME.pem and its key NAME.key."""
    ossl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
         f"{name}.pem", "-days", "2", "-subj", f"/CN={cn}")


def issue(d, name, cn, san, ca="ca"):
    """A key NAME.key and a certificate NAME.pem for `cn` with subjectAltName `san`, signed
    by the CA CA.pem (its key CA.key); the request stays as NAME.csr, its extension file as
    NAME.cnf, for signing again by another CA (sign)."""
    ossl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
         f"{name}.csr", "-subj", f"/CN={cn}")
    with open(os.path.join(d, f"{name}.cnf"), "w") as f:
        f.write(f"subjectAltName={san}\n")
    sign(d, name, ca, f"{name}.pem")


def sign(d, name, ca, out):
    """Signs the request NAME.csr (with NAME.cnf's extensions) by the CA CA into OUT."""
    ossl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", out, "-days", "2", "-extfile", f"{name}.cnf")


def make_ca(d):
    """A throw-away CA and a server certificate for 127.0.0.1, with the openssl CLI."""
    new_ca(d, "ca", "vocohook test CA")
    issue(d, "srv", "127.0.0.1", "IP:127.0.0.1")
    return os.path.join(d, "ca.pem"), os.path.join(d, "srv.pem"), os.path.join(d, "srv.key")


CONF = """\
{user}
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    client_max_body_size {body_max};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:{port} ssl;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_request_buffering {buffering};
        }}
    }}
}}
"""


class TlsFront:
    """nginx on 127.0.0.1:<port> with TLS, proxying to 127.0.0.1:`upstream`. `buffering`:
    nginx's proxy_request_buffering (on, its default: the whole body is read before it goes
    upstream; off: it streams)."""

    def __init__(self, upstream, buffering="on", body_max="256m"):
        if not NGINX:
            raise unittest.SkipTest("nginx is needed for the TLS terminator (scripts/install-deps)")
        self.dir = tempfile.mkdtemp(prefix="vh-tls-")
        self.ca, cert, key = make_ca(self.dir)
        os.makedirs(os.path.join(self.dir, "tmp"))
        # Run as root, nginx's worker would switch to an account that cannot use self.dir.
        user = "user root;" if os.geteuid() == 0 else ""
        self.params = dict(user=user, dir=self.dir, cert=cert, key=key, upstream=upstream,
                           buffering=buffering, body_max=body_max)
        self.proc = None
        self.port = None

    def start(self):
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(CONF.format(port=port, **self.params))
            self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", conf],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.err = Lines(self.proc.stderr)
            line = self.err.wait_for(lambda x: "start worker process" in x
                                     or "[emerg]" in x, START_TIMEOUT)
            if line and "start worker process" in line:
                self.port = port
                return self
            self.stop()
            if not line or "Address already in use" not in line:
                break
        raise AssertionError(f"nginx did not start:\n{self.err.text()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        if self.proc:
            self.err.wait_eof(STOP_TIMEOUT)

    def context(self):
        """A client TLS context trusting only this front's test CA."""
        return ssl.create_default_context(cafile=self.ca)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False
