"""Real webhook receivers on 127.0.0.1 for the delivery tests: each records every request
(arrival time, headers, raw body) and answers as its `behaviour` says."""
import http.server
import threading
import time


class Receiver:
    """An HTTP server on an ephemeral loopback port. `behaviour(n)` gets the 1-based number
    of the request and returns the status to answer."""

    def __init__(self, behaviour=lambda n: 204):
        self.behaviour = behaviour
        self.requests = []  # (monotonic arrival, headers dict, body bytes)
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.cond:
                    outer.requests.append((time.monotonic(),
                                           {k.lower(): v for k, v in self.headers.items()}, body))
                    count = len(outer.requests)
                    outer.cond.notify_all()
                status = outer.behaviour(count)
                if status in (204, 304):
                    reply = b""  # these statuses have no body; bytes sent would poison reuse
                else:
                    reply = b'{"ok":true}' if 200 <= status < 300 else b'{"error":"nope"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.request_queue_size = 128
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_count(self, n, timeout):
        """Waits until at least `n` requests arrived; returns the count then."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return len(self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
