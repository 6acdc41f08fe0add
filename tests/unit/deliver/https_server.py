"""A throw-away HTTPS receiver for tests/unit/deliver/test_engine.c.

usage: https_server.py CERT KEY keep|close|trailing

Listens on 127.0.0.1 (a free port, printed on the first line of stdout), answers every
POST with 200 "ok", and keeps connections open (keep) or closes each after one answer
(close). With trailing, the first answer on a connection is followed, in a TLS record of
its own, by a second answer nobody asked for (299 "stale"), and any later request on that
connection gets 500 "real". Exits when its stdin reaches end of file, so it never outlives
the test.
"""
import http.server
import os
import ssl
import sys
import threading


def main():
    cert, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if mode == "trailing":  # wbufsize 0: each write is a TLS record of its own
                self.served = getattr(self, "served", 0) + 1
                if self.served == 1:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    self.wfile.write(b"HTTP/1.1 299 Stale\r\nContent-Length: 5\r\n\r\nstale")
                else:
                    self.wfile.write(b"HTTP/1.1 500 Real\r\nContent-Length: 4\r\n\r\nreal")
                return
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if mode == "close":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # a client that rejects our certificate is part of the test

    srv = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)

    def watch_stdin():
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
