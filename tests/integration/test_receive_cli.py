"""`vocohook sessions list|show|export` over an inbox that `vocohook receive` filled, and the
receive verb's own command line."""
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from recv_harness import Receiver, make_tmp, payload  # noqa: E402
from server import VOCOHOOK, clean_env  # noqa: E402

SID = "s1234567-abcd-1234-abcd-123456789012"


class Sessions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.r = Receiver(recordings=True).start()
        cls.bodies = {
            SID: payload(SID),
            "s_web": payload("s_web", None, call=None, agent_name="Web, \"Helper\""),
            "s_rec": payload("s_rec", "https://192.0.2.1/rec.wav"),  # refused: not public
        }
        for body in cls.bodies.values():
            assert cls.r.deliver(body).status == 200
        cls.r.wait_job("s_rec", {"failed"})

    @classmethod
    def tearDownClass(cls):
        cls.r.stop()

    def test_list(self):
        rc, out, err = self.r.cli("sessions", "list")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["RECEIVED", "SESSION", "AGENT", "DURATION", "CALL",
                                            "RECORDING"])
        self.assertEqual([l.split()[1] for l in lines[1:]], [SID, "s_web", "s_rec"])
        self.assertIn("Sales Assistant", lines[1])
        self.assertIn("127s", lines[1])
        self.assertEqual(lines[1].split()[-2:], ["completed", "none"])
        self.assertEqual(lines[2].split()[-2:], ["-", "none"])
        self.assertEqual(lines[3].split()[-1], "failed")

    def test_list_filters(self):
        rc, out, _ = self.r.cli("sessions", "list", "--status", "failed")
        self.assertEqual((rc, [l.split()[1] for l in out.splitlines()[1:]]), (0, ["s_rec"]))
        rc, out, _ = self.r.cli("sessions", "list", "--since", "1h", "--limit", "1")
        self.assertEqual([l.split()[1] for l in out.splitlines()[1:]], [SID])
        rc, out, _ = self.r.cli("sessions", "list", "--since", "2999-01-01T00:00:00.000Z")
        self.assertEqual((rc, len(out.splitlines())), (0, 1))
        rc, _, err = self.r.cli("sessions", "list", "--status", "bogus")
        self.assertEqual(rc, 2)
        rc, _, err = self.r.cli("sessions", "list", "--since", "yesterday")
        self.assertEqual(rc, 2)

    def test_show(self):
        rc, out, err = self.r.cli("sessions", "show", SID)
        self.assertEqual(rc, 0, err)
        self.assertIn(f"session     {SID}", out)
        self.assertIn("agent       Sales Assistant (a1b2c3d4-e5f6-7890-abcd-ef1234567890)", out)
        self.assertIn("c1234567-abcd-1234-abcd-123456789012  +14155551234 -> +919876543210, "
                      "completed", out)
        self.assertIn("latency     min 450 ms, avg 680 ms, max 1200 ms (as sent)", out)
        self.assertIn("min 700 ms, avg 700 ms, max 700 ms over 1 bot turn with latency", out)
        self.assertIn("recording   none (recording_url was null)", out)
        self.assertIn("transcript (3 turns)", out)
        self.assertIn("14:30:01.000  bot: Hello! Thanks for taking my call.", out)
        self.assertIn("14:30:04.500  user: Hi, I'm interested in your enterprise plan.", out)
        self.assertIn("14:30:05.200  bot (+700 ms): Great choice!", out)
        rc, out, _ = self.r.cli("sessions", "show", "s_rec")
        self.assertIn("recording   failed after 1 attempt", out)
        self.assertIn("not a public address", out)
        rc, out, _ = self.r.cli("sessions", "show", "s_web")
        self.assertIn("call        none", out)

    def test_show_unknown(self):
        rc, out, err = self.r.cli("sessions", "show", "nope")
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("'nope'", err)

    def test_export_jsonl(self):
        rc, out, err = self.r.cli("sessions", "export", "--format", "jsonl")
        self.assertEqual(rc, 0, err)
        rows = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([x["session_id"] for x in rows], [SID, "s_web", "s_rec"])
        for x in rows:
            self.assertEqual(x["payload"], json.loads(self.bodies[x["session_id"]]))
        self.assertEqual(rows[2]["recording"], "failed")
        self.assertEqual(rows[2]["jobs"][0]["kind"], "download")

    def test_export_csv(self):
        rc, out, err = self.r.cli("sessions", "export", "--format", "csv")
        self.assertEqual(rc, 0, err)
        rows = list(csv.DictReader(io.StringIO(out, newline="")))
        self.assertEqual([x["session_id"] for x in rows], [SID, "s_web", "s_rec"])
        self.assertEqual(rows[0]["agent_name"], "Sales Assistant")
        self.assertEqual(rows[0]["credits_used"], "2.12")
        self.assertEqual(rows[0]["call_status"], "completed")
        self.assertEqual(rows[0]["turns"], "3")
        self.assertEqual(rows[1]["agent_name"], 'Web, "Helper"')
        self.assertEqual(rows[1]["call_id"], "")
        self.assertEqual(rows[2]["recording_state"], "failed")

    def test_export_needs_a_format(self):
        rc, _, err = self.r.cli("sessions", "export")
        self.assertEqual(rc, 2)
        rc, _, err = self.r.cli("sessions", "export", "--format", "xml")
        self.assertEqual(rc, 2)


class ShowControlBytes(unittest.TestCase):
    def test_show_keeps_control_bytes_off_the_terminal(self):
        # The agent name is free text from the sender. `list` blanks its control bytes, as
        # `partner list` does; `show` printed it raw: an ESC sequence reached the terminal,
        # and a newline forged a line of the report (here a fake "recording" line).
        sid = "s_ctl_show"
        with Receiver() as r:
            self._check(r, sid)

    def _check(self, r, sid):
        body = payload(sid, agent_name="A\u001b]0;pwned\u0007\nrecording   downloaded /etc/x")
        self.assertEqual(r.deliver(body).status, 200)
        rc, out, err = r.cli("sessions", "show", sid)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("\x1b", out)
        self.assertNotIn("\x07", out)
        agent = [l for l in out.splitlines() if l.startswith("agent ")]
        self.assertEqual(len(agent), 1, out)
        self.assertIn("recording   downloaded /etc/x (a1b2c3d4", agent[0])
        self.assertEqual([l for l in out.splitlines() if l.startswith("recording")],
                         ["recording   none (recording_url was null)"], out)

    def test_list_and_show_keep_c1_controls_off_the_terminal(self):
        # C1 controls (U+0080-U+009F) are controls too (decisions.md: U+009B is CSI to some
        # terminals, U+0085 a line break): both verbs wrote them as they came in the payload.
        sid = "s_c1_show"
        c1 = ("\u009b", "\u0085", "\u0090", "\u009f")
        with Receiver() as r:
            body = payload(sid, agent_name="Red\u009b31mAgent\u0085X")
            doc = json.loads(body)
            doc["data"]["transcript"][0]["content"] = "hi\u009b2J there\u0090\u009f"
            body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
            self.assertEqual(r.deliver(body).status, 200)
            for verb in (("list",), ("show", sid)):
                rc, out, err = r.cli("sessions", *verb)
                self.assertEqual(rc, 0, err)
                for ch in c1:
                    self.assertNotIn(ch, out, verb)
            self.assertIn("agent       Red  31mAgent  X (a1b2c3d4", out)
            self.assertIn("bot: hi  2J there    \n", out)
            rc, out, _ = r.cli("sessions", "list")
            self.assertIn("Red  31mAgent  X", out)


class CommandLine(unittest.TestCase):
    def run_cli(self, *args, env=None, timeout=30):
        try:
            p = subprocess.run([VOCOHOOK, *args], capture_output=True, env=clean_env(env),
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:  # still running: killed by subprocess.run
            return None, (e.stdout or b"").decode(), (e.stderr or b"").decode()
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_missing_inbox(self):
        rc, _, err = self.run_cli("sessions", "list", "--db", "/nonexistent/inbox.db")
        self.assertEqual(rc, 3)
        self.assertIn("inbox", err)

    def test_someone_elses_sqlite_file_is_left_alone(self):
        # A wrong --db that happens to be SQLite got the inbox's tables written into it, by
        # `sessions` (a reader) as by `receive`. Both refuse it now, and add nothing.
        path = os.path.join(make_tmp(), "app.db")
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        for argv, env in ((["sessions", "list", "--db", path], None),
                          (["receive", "--listen", "127.0.0.1:0", "--db", path],
                           {"VOCOHOOK_SECRETS": "s"})):
            rc, out, err = self.run_cli(*argv, env=env, timeout=5)
            self.assertEqual(rc, 3, out + err)
            self.assertIn("not a vocohook inbox (it has tables but no schema version)", err)
            with sqlite3.connect(path) as db:
                tables = [r[0] for r in db.execute("SELECT name FROM sqlite_schema")]
            self.assertEqual(tables, ["users"], argv[0])

    def test_sessions_never_makes_an_inbox_of_an_empty_file(self):
        path = os.path.join(make_tmp(), "empty.db")
        open(path, "wb").close()
        rc, out, err = self.run_cli("sessions", "list", "--db", path)
        self.assertEqual(rc, 3, out + err)
        self.assertIn("empty, not an inbox yet", err)
        self.assertEqual(os.path.getsize(path), 0)

    def test_receive_needs_a_secret(self):
        rc, _, err = self.run_cli("receive", "--listen", "127.0.0.1:0", "--db",
                                  os.path.join(make_tmp(), "x.db"))
        self.assertEqual(rc, 2)
        self.assertIn("VOCOHOOK_SECRETS", err)

    def test_receive_secrets_list_with_spaces(self):
        # "new, old" (as one writes a list) used to give the secret " old": the receiver
        # started, and every webhook signed with the old secret got 401 mismatch, during the
        # very rotation the list is for. It must say so at start instead.
        argv = [VOCOHOOK, "receive", "--listen", "127.0.0.1:0", "--db",
                os.path.join(make_tmp(), "x.db")]
        env = clean_env({"VOCOHOOK_SECRETS": "whsec_new, whsec_old"})
        try:
            p = subprocess.run(argv, capture_output=True, env=env, timeout=5)
            rc, out, err = p.returncode, p.stdout.decode(), p.stderr.decode()
        except subprocess.TimeoutExpired as e:  # it started: killed by subprocess.run
            rc, out, err = None, (e.stdout or b"").decode(), (e.stderr or b"").decode()
        self.assertEqual(rc, 2, out + err)
        self.assertIn("VOCOHOOK_SECRETS", err)
        self.assertNotIn("whsec_old", err)

    def test_receive_bad_flags(self):
        env = {"VOCOHOOK_SECRETS": "s"}
        self.assertEqual(self.run_cli("receive", "--tolerance", "-5", env=env)[0], 2)
        self.assertEqual(self.run_cli("receive", "--workers", "0", env=env)[0], 2)
        # digits only: strtoll alone took these as 5
        for odd in ("+5", " 5"):
            rc, _, err = self.run_cli("receive", "--workers", odd, env=env)
            self.assertEqual(rc, 2, err)
            self.assertIn("--workers: expected an integer from 1 to 64", err)
        self.assertEqual(self.run_cli("receive", "--recording-max", "lots", env=env)[0], 2)
        self.assertEqual(self.run_cli("receive", "extra", env=env)[0], 2)
        rc, _, err = self.run_cli("receive", "--forward", "ftp://x", "--db",
                                  os.path.join(make_tmp(), "x.db"), env=env)
        self.assertEqual(rc, 2, err)
        rc, _, err = self.run_cli("receive", "--recordings", "/nonexistent/dir", "--db",
                                  os.path.join(make_tmp(), "x.db"), env=env)
        self.assertEqual(rc, 3, err)
        self.assertIn("recordings directory", err)

    def test_receive_unreadable_ca_file(self):
        # Like `serve`, the receiver must refuse a CA file it cannot read at start: otherwise
        # it runs, and every HTTPS download and forward fails on "error setting certificate
        # file" and is retried (downloads until their link expires, forwards until failed).
        rc, out, err = self.run_cli("receive", "--listen", "127.0.0.1:0", "--ca-file",
                                    "/nonexistent/ca.pem", "--db",
                                    os.path.join(make_tmp(), "x.db"),
                                    env={"VOCOHOOK_SECRETS": "s"}, timeout=5)
        self.assertEqual(rc, 3, out + err)
        self.assertIn("/nonexistent/ca.pem", err)
        self.assertNotIn("listening", out)

    def test_help(self):
        rc, out, _ = self.run_cli("receive", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("VOCOHOOK_SECRETS", out)
        rc, out, _ = self.run_cli("sessions", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("export --format jsonl|csv", out)

    def test_threads_run_under_the_chosen_policy(self):
        # /proc/PID/task/TID/stat field 41 is the policy: 0 SCHED_OTHER, 3 SCHED_BATCH.
        def policies(pid):
            out = {}
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[tid] = int(fields[38])  # field 41, counted after "pid (comm)"
            return out

        for args, want, name in (((), 3, "batch"), (("--sched", "normal"), 0, "normal")):
            with Receiver(args=args) as r:
                r.deliver(payload("s_sched_" + name))  # the inbox's commit thread starts
                got = policies(r.proc.pid)
                self.assertGreater(len(got), 3, got)  # HTTP, commit, log, worker threads
                self.assertEqual(set(got.values()), {want}, got)
            self.assertIn('"sched":"%s"' % name, r.err.text())
        env = {"VOCOHOOK_SECRETS": "s"}
        rc, _, err = self.run_cli("receive", "--sched", "fifo", env=env)
        self.assertEqual(rc, 2)
        self.assertIn("--sched: expected batch or normal, got 'fifo'", err)

    def test_inbox_file_is_private_and_log_is_json(self):
        with Receiver() as r:
            self.assertEqual(os.stat(r.db).st_mode & 0o777, 0o600)
            r.deliver(payload("s_log"))
            r.deliver(payload("s_log"))
        lines = [json.loads(line) for line in r.err.text().splitlines()]
        stored = [(x["level"], x["msg"], x["jobs"]) for x in lines
                  if x.get("session_id") == "s_log"]
        self.assertEqual(stored, [("info", "stored", 0), ("info", "duplicate", 0)])
        for x in lines:
            self.assertRegex(x["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_sighup_stops_as_sigterm_does(self):
        # As `serve` (session 21): a hangup killed the receiver at once (exit 129), with
        # its jobs cut short unrecorded. It now stops it cleanly, and says so.
        r = Receiver().start()
        try:
            self.assertEqual(r.deliver(payload("s_hup")).status, 200)
            r.stop(signal.SIGHUP)  # asserts exit 0
        finally:
            r.kill()
        lines = [json.loads(line) for line in r.err.text().splitlines()]
        self.assertEqual([x["signal"] for x in lines if x["msg"] == "stopping"], ["SIGHUP"])
        self.assertEqual(lines[-1]["msg"], "stopped")


if __name__ == "__main__":
    unittest.main()
