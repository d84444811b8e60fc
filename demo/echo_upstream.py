"""The quick start's upstream: answers every request with 200 and a plain-text
echo of its method, path and headers, so you can see what Envoy passed on
after gatehouse's check (the `x-auth-request-*` identity headers).

Credentials are not echoed: the values of `authorization`, `cookie` and
`x-auth-request-token` are replaced by their length.

    python3 demo/echo_upstream.py [PORT]      # default 8000, on 127.0.0.1
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REDACTED = {"authorization", "cookie", "x-auth-request-token"}


class Echo(BaseHTTPRequestHandler):
    server_version = "demo-echo"

    def _echo(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        lines = [f"upstream saw: {self.command} {self.path}"]
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in REDACTED:
                scheme = value.split(" ", 1)[0] + " " if lower == "authorization" and " " in value else ""
                value = f"{scheme}<{len(value)} characters, not shown>"
            lines.append(f"  {lower}: {value}")
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _echo

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        sys.stderr.write("echo: " + (format % args) + "\n")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = ThreadingHTTPServer(("127.0.0.1", port), Echo)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
