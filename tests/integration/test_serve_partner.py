"""`vocohook partner` against the real daemon: a key is printed once, works over HTTP, and
stops working when rotated."""
import os
import re
import sys
import tempfile
import shutil
import sqlite3
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from server import Daemon, parse_fields, run_cli  # noqa: E402

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


if __name__ == "__main__":
    unittest.main()
