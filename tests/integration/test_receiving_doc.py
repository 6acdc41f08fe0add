"""The first C example of docs/receiving.md, compiled as an integrator would: its lines
taken as written (only the `...;` placeholders become returns), inside one function, built
with -Wall -Wextra -Werror against include/ and the library. It must verify a request signed
here with Python's hmac under one of its two secrets, and refuse the same request with one
byte of the body changed."""
import datetime
import hashlib
import hmac
import os
import re
import shutil
import subprocess
import tempfile
import unittest

SOURCE_DIR = os.environ.get("VH_SOURCE_DIR", ".")
BINARY_DIR = os.environ.get("VH_BINARY_DIR", "build")
DOC = os.path.join(SOURCE_DIR, "docs", "receiving.md")
BODY = os.path.join(SOURCE_DIR, "tests", "data", "good", "seed_payload.compact.json")

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    static char body[1 << 20];
    FILE *f;
    size_t body_len;

    if (argc != 4 || !(f = fopen(argv[1], "rb")))
        return 2;
    body_len = fread(body, 1, sizeof(body), f);
    fclose(f);
    printf("%d\n", handle(argv[2], strlen(argv[2]), argv[3], strlen(argv[3]), body, body_len));
    return 0;
}
"""


def cache_value(name):
    with open(os.path.join(BINARY_DIR, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split("=", 1)[1].strip()
    return ""


def doc_program():
    """The example as one C file: its #includes at the top, its statements in handle()."""
    with open(DOC) as f:
        block = re.search(r"```c\n(.*?)```", f.read(), re.S).group(1)
    includes, body, codes = [], [], iter(("401", "400"))
    for line in block.splitlines():
        if line.startswith("#include"):
            includes.append(line)
        elif line.strip() == "...;":
            body.append("        return %s;" % next(codes))
        else:
            body.append("    " + line)
    return ("\n".join(includes) +
            "\n\nstatic int handle(const char *ts, size_t ts_len, const char *sig, size_t sig_len,"
            "\n                  const char *body, size_t body_len)\n{\n" + "\n".join(body) +
            "\n    vh_event_free(ev);\n    return 200;\n}\n" + MAIN)


class ReceivingDoc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vh-doc-")
        src = os.path.join(cls.tmp, "app.c")
        cls.exe = os.path.join(cls.tmp, "app")
        with open(src, "w") as f:
            f.write(doc_program())
        cc = cache_value("CMAKE_C_COMPILER") or "cc"
        flags = ["-std=c17", "-Wall", "-Wextra", "-Werror"]
        if cache_value("VH_SANITIZE") == "ON":
            flags += ["-fsanitize=address,undefined"]
        p = subprocess.run([cc] + flags + ["-I", os.path.join(SOURCE_DIR, "include"), src,
                                           "-o", cls.exe, "-L", BINARY_DIR, "-lvocohook",
                                           "-Wl,-rpath," + os.path.abspath(BINARY_DIR)],
                           capture_output=True, text=True, timeout=120)
        cls.compile_err = p.stderr if p.returncode else None

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_app(self, body, ts, sig):
        path = os.path.join(self.tmp, "body.json")
        with open(path, "wb") as f:
            f.write(body)
        p = subprocess.run([self.exe, path, ts, sig], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.strip()

    def test_compiles_and_verifies(self):
        self.assertIsNone(self.compile_err, "the example does not compile warning-free")
        with open(BODY, "rb") as f:
            body = f.read()
        now = datetime.datetime.now(datetime.timezone.utc)
        ts = now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)
        mac = hmac.new(b"whsec_old...", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        sig = "sha256=" + mac
        self.assertEqual(self.run_app(body, ts, sig), "200")
        tampered = bytearray(body)
        tampered[body.index(b"Sales")] ^= 0x20
        self.assertEqual(self.run_app(bytes(tampered), ts, sig), "401")


if __name__ == "__main__":
    unittest.main()
