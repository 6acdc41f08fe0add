"""Shared helpers for the CLI integration tests: run the real vocohook binary."""
import os
import subprocess
import tempfile

VOCOHOOK = os.environ.get("VOCOHOOK", "build/vocohook")
SOURCE_DIR = os.environ.get("VH_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SOURCE_DIR, "tests", "data")


def run(*args, stdin=None, env=None):
    """Runs `vocohook ARGS`; returns (exit code, stdout bytes, stderr text)."""
    full_env = dict(os.environ)
    for k in ("VOCOHOOK_SECRET", "VOCOHOOK_SECRETS", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        full_env.pop(k, None)
    if env:
        full_env.update(env)
    p = subprocess.run([VOCOHOOK, *args], input=stdin, capture_output=True, env=full_env,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def write_temp(data: bytes, suffix=".json"):
    f = tempfile.NamedTemporaryFile(delete=False, suffix=suffix)
    f.write(data)
    f.close()
    return f.name
