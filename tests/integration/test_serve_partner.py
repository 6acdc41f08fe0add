"""`vocohook partner` against the real daemon: a key is printed once, works over HTTP, and
stops working when rotated."""
import os
import re
import sys
import tempfile
import threading
import shutil
import sqlite3
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import Daemon, create_partner, parse_fields, run_cli  # noqa: E402

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
KEY = r"rg_live_[0-9a-f]{64}"


class PartnerCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="vh-partner-")
        self.db = f"sqlite:{self.tmp}/db"

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_create_prints_id_and_key_once_and_list_shows_no_key(self):
        rc, out, err = run_cli("partner", "create", "Acme Voice", "--db", self.db)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, rf"^partner_id: {UUID}\napi_key: {KEY}\n$")
        fields = parse_fields(out)
        rc, out2, err = run_cli("partner", "create", "Other", "--db", self.db)
        self.assertEqual(rc, 0, err)
        rc, listing, err = run_cli("partner", "list", "--db", self.db)
        self.assertEqual(rc, 0, err)
        rows = [line.split("\t") for line in listing.splitlines()]
        self.assertEqual([r[:2] for r in rows],
                         [[fields["partner_id"], "Acme Voice"],
                          [parse_fields(out2)["partner_id"], "Other"]])
        for r in rows:
            self.assertRegex(r[2], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertNotIn("rg_live_", listing)
        # The store keeps a hash: the key's bytes are not in the database file.
        with open(os.path.join(self.tmp, "db"), "rb") as f:
            self.assertNotIn(fields["api_key"].encode(), f.read())

    def test_list_keeps_control_characters_out_of_the_terminal(self):
        # The store refuses C0 and C1 controls in a name; one stored before it refused C1
        # (U+009B is CSI to some terminals), or written around it, is read with spaces in
        # their place (store.c), so the list keeps one partner a line and its columns.
        rc, out, err = run_cli("partner", "create", "red\u009b31m", "--db", self.db)
        self.assertEqual(rc, 1, out)
        self.assertIn("without control characters", err)
        rc, out, err = run_cli("partner", "create", "old", "--db", self.db)
        self.assertEqual(rc, 0, err)
        con = sqlite3.connect(os.path.join(self.tmp, "db"))
        with con:
            con.execute("UPDATE partners SET name = ?", ("red\u009b31m\u0085\u00a0z\tq\x01",))
        con.close()
        rc, listing, err = run_cli("partner", "list", "--db", self.db)
        self.assertEqual(rc, 0, err)
        self.assertEqual(listing.split("\t")[1], "red  31m  \u00a0z q ")

    def test_db_from_environment(self):
        rc, out, err = run_cli("partner", "create", "envco", env={"VOCOHOOK_DB": self.db})
        self.assertEqual(rc, 0, err)
        rc, listing, err = run_cli("partner", "list", "--db", self.db)
        self.assertIn("envco", listing)

    def test_db_from_the_serve_config(self):
        # The file serve reads (VOCOHOOK_CONFIG or --config) names the store: partner used
        # to ignore it and create a partner in ./var/vocohook.db, whose key the server then
        # refused. --db and VOCOHOOK_DB still come first.
        ini = os.path.join(self.tmp, "serve.ini")
        with open(ini, "w") as f:
            f.write(f"[serve]\ndb = {self.db}\n")
        cwd = os.getcwd()
        os.chdir(self.tmp)  # where a default store would land
        try:
            rc, _, err = run_cli("partner", "create", "fromenv", env={"VOCOHOOK_CONFIG": ini})
            self.assertEqual(rc, 0, err)
            rc, _, err = run_cli("partner", "create", "fromflag", "--config", ini)
            self.assertEqual(rc, 0, err)
            self.assertFalse(os.path.exists("var"), "a default store was made")
            other = f"sqlite:{self.tmp}/other.db"
            rc, _, err = run_cli("partner", "create", "dbwins", "--config", ini, "--db", other)
            self.assertEqual(rc, 0, err)
            rc, listing, err = run_cli("partner", "list", "--config", ini,
                                       env={"VOCOHOOK_DB": other})
            self.assertEqual([r.split("\t")[1] for r in listing.splitlines()], ["dbwins"], err)
        finally:
            os.chdir(cwd)
        rc, listing, err = run_cli("partner", "list", "--db", self.db)
        self.assertEqual([r.split("\t")[1] for r in listing.splitlines()],
                         ["fromenv", "fromflag"], err)
        with open(ini, "w") as f:
            f.write("timeout = forever\n")
        rc, _, err = run_cli("partner", "list", "--config", ini)
        self.assertEqual(rc, 2, err)
        self.assertIn(f"{ini}:1: timeout:", err)

    def test_usage_and_rejections(self):
        for args in (["partner"], ["partner", "create"], ["partner", "list", "x"],
                     ["partner", "frobnicate"], ["partner", "rotate-key"],
                     ["partner", "create", "a", "--bogus"]):
            rc, _, err = run_cli(*args, "--db", self.db)
            self.assertEqual(rc, 2, f"{args}: {err}")
        rc, _, err = run_cli("partner", "rotate-key", "00000000-0000-4000-8000-000000000000",
                             "--db", self.db)
        self.assertEqual(rc, 1, err)
        self.assertTrue(err.startswith("vocohook partner: "), err)
        rc, _, err = run_cli("partner", "create", "", "--db", self.db)
        self.assertEqual(rc, 1, err)
        rc, _, err = run_cli("partner", "list", "--db", f"sqlite:{self.tmp}/no/such/dir/db")
        self.assertEqual(rc, 3, err)

    def test_store_file_is_private(self):
        # The sender's store holds every endpoint's signing secret in clear (it must, to
        # sign): created under the usual umask 022 it was 0644, so any local user could read
        # every whsec_ secret (the receiver's inbox is 0600 for less). Its -wal and -shm
        # files take the database file's mode.
        old = os.umask(0o022)
        try:
            rc, _, err = run_cli("partner", "create", "acme", "--db", self.db)
        finally:
            os.umask(old)
        self.assertEqual(rc, 0, err)
        for name in os.listdir(self.tmp):
            mode = os.stat(os.path.join(self.tmp, name)).st_mode & 0o777
            self.assertEqual(mode, 0o600, f"{name}: {oct(mode)}")

    def test_default_store_in_a_fresh_directory(self):
        # The README's first sender command, in a fresh checkout (no ./var yet), and every
        # verb on the default store (sqlite:./var/vocohook.db): each failed with exit 3
        # "unable to open database file", where `vocohook receive` creates ./var for its
        # default inbox.
        cwd = os.getcwd()
        os.chdir(self.tmp)
        try:
            rc, out, err = run_cli("partner", "create", "Acme", "--db",
                                   "sqlite:./var/vocohook.db")
            self.assertEqual(rc, 0, err)
            shutil.rmtree(os.path.join(self.tmp, "var"))
            rc, out, err = run_cli("partner", "list")
            self.assertEqual((rc, out), (0, ""), err)
            self.assertEqual(os.stat("var").st_mode & 0o777, 0o700)
        finally:
            os.chdir(cwd)

    def test_check_key_says_whether_a_key_still_works(self):
        # What scripts/run asks before it prints a saved key: the key comes on stdin (never
        # in argv, which ps shows), the answer is the exit code, and nothing shows the key.
        acme = parse_fields(run_cli("partner", "create", "acme", "--db", self.db)[1])
        other = parse_fields(run_cli("partner", "create", "other", "--db", self.db)[1])

        def check(pid, stdin):
            rc, out, err = run_cli("partner", "check-key", pid, "--db", self.db,
                                   stdin=stdin.encode())
            self.assertEqual(out, "")
            for key in (acme["api_key"], other["api_key"]):
                self.assertNotIn(key, err)
            return rc, err

        self.assertEqual(check(acme["partner_id"], acme["api_key"] + "\n"), (0, ""))
        self.assertEqual(check(acme["partner_id"], acme["api_key"]), (0, ""))
        rc, err = check(acme["partner_id"], other["api_key"] + "\n")  # another partner's
        self.assertEqual(rc, 1, err)
        self.assertEqual(err, "vocohook partner: check-key: the key on standard input is not "
                              f"a live key of partner '{acme['partner_id']}'\n")
        for stdin in ("", "\n", "rg_live_" + "0" * 64 + "\n", "x" * 200):
            rc, err = check(acme["partner_id"], stdin)
            self.assertEqual(rc, 1, f"{stdin!r}: {err}")
        rc, out, err = run_cli("partner", "rotate-key", acme["partner_id"], "--db", self.db)
        self.assertEqual(rc, 0, err)
        self.assertEqual(check(acme["partner_id"], acme["api_key"])[0], 1)  # rotated away
        self.assertEqual(check(acme["partner_id"], parse_fields(out)["api_key"]), (0, ""))
        rc, _, err = run_cli("partner", "check-key", "--db", self.db, stdin=b"")
        self.assertEqual(rc, 2, err)

    def test_help(self):
        rc, out, _ = run_cli("partner", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("rotate-key", out)
        self.assertIn("check-key", out)


class PartnerOverHttp(unittest.TestCase):
    def test_rotate_key_revokes_the_old_key(self):
        d = Daemon()
        try:
            rc, out, err = run_cli("partner", "create", "acme", "--db", d.db)
            self.assertEqual(rc, 0, err)
            fields = parse_fields(out)
            pid, old = fields["partner_id"], fields["api_key"]
            d.start()
            r = d.request("GET", "/api/v2/config/webhooks", key=old)
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.json()["success"])
            r = d.request("GET", "/api/v2/config/webhooks")
            self.assertEqual(r.status, 401, r)
            self.assertEqual(r.json()["error"]["code"], "UNAUTHORIZED")

            # Rotate while the daemon runs (the CLI and the daemon share the SQLite file).
            rc, out, err = run_cli("partner", "rotate-key", pid, "--db", d.db)
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, rf"^partner_id: {re.escape(pid)}\napi_key: {KEY}\n$")
            new = parse_fields(out)["api_key"]
            self.assertNotEqual(new, old)
            r = d.request("GET", "/api/v2/config/webhooks", key=old)
            self.assertEqual(r.status, 401, r)
            r = d.request("GET", "/api/v2/config/webhooks", key=new)
            self.assertEqual(r.status, 200, r)
            d.stop()
        finally:
            d.cleanup()

    def test_concurrent_legacy_puts_next_to_four_endpoints(self):
        """Legacy PUTs racing to create the `default` endpoint of a partner that has four
        others: the losers replace the winner's, as they do one after another. They used
        to answer 409 "at most 5 endpoints": the winner's row filled the last slot, and only
        a conflict on the label sent a loser back to read it."""
        with Daemon(["--rate-limit", "off"]) as d:
            _, key = create_partner(d.db)
            for i in range(4):
                r = d.request("POST", "/api/v2/config/webhooks", key=key,
                              body={"label": f"ep{i}", "url": f"https://example.com/{i}"})
                self.assertEqual(r.status, 201, r)
            for _ in range(5):
                start = threading.Barrier(8)
                results = [None] * 8

                def put(i):
                    conn = d.connect()
                    conn.connect()
                    start.wait()
                    results[i] = d.request("PUT", "/api/v2/config/webhook", key=key, conn=conn,
                                           body={"webhook_url": f"https://example.com/d{i}"})
                    conn.close()

                threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                for r in results:
                    # Eight writers of one row may wear out a request's tries (docs/decisions.md,
                    # "Endpoint changes never undo each other"); the cap is never the answer.
                    if r.status != 200:
                        self.assertEqual(r.status, 409, r)
                        self.assertIn("being changed by other requests",
                                      r.json()["error"]["message"], r)
                self.assertIn(200, [r.status for r in results])
                r = d.request("GET", "/api/v2/config/webhooks", key=key)
                eps = r.json()["data"]
                self.assertEqual(sorted(e["label"] for e in eps),
                                 ["default", "ep0", "ep1", "ep2", "ep3"])
                default = [e for e in eps if e["label"] == "default"][0]
                r = d.request("DELETE", f"/api/v2/config/webhooks/{default['id']}", key=key)
                self.assertEqual(r.status, 200, r)
            # Five others and no default: the cap is the answer, at once.
            r = d.request("POST", "/api/v2/config/webhooks", key=key,
                          body={"label": "ep4", "url": "https://example.com/4"})
            self.assertEqual(r.status, 201, r)
            r = d.request("PUT", "/api/v2/config/webhook", key=key,
                          body={"webhook_url": "https://example.com/d"})
            self.assertEqual(r.status, 409, r)
            self.assertEqual(r.json()["error"]["message"], "at most 5 endpoints per partner")


if __name__ == "__main__":
    unittest.main()
