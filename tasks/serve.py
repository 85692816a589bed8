"""Serve a folder, or a fixed answer, over HTTP for the rest of the run.

The server starts in the background and the step ends at once with its ``url``; later
steps (a health check, a webhook, a browser) can use it, and it stops when the run ends,
also after a failure or a cancellation. Without ``path`` every request gets
``response`` (default: 200 and ``ok``), any method: a stand-in webhook or health
endpoint. It binds 127.0.0.1 unless ``host`` says otherwise, and another address needs
``allow_remote: true``, since it would serve the folder to the network.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runner.errors import HandlerError

name = "serve"
shorthand = "path"
schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "A folder to serve (files and listings)."},
        "port": {
            "type": "integer",
            "minimum": 0,
            "maximum": 65535,
            "default": 0,
            "description": "0 = a free port.",
        },
        "host": {"type": "string", "default": "127.0.0.1"},
        "allow_remote": {"type": "boolean", "default": False, "description": "Allow a non-loopback host."},
        "response": {
            "type": "object",
            "properties": {
                "status": {"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
                "body": {"type": "string", "default": "ok"},
                "content_type": {"type": "string", "default": "text/plain; charset=utf-8"},
            },
            "additionalProperties": False,
            "description": "Without path: what every request gets.",
        },
    },
    "not": {"required": ["path", "response"]},
    "additionalProperties": False,
}
result = {
    "url": "the server's base URL (http://127.0.0.1:PORT/)",
    "port": "the port it listens on",
    "host": "the address it listens on",
}
example = """\
- id: site                                     # later: http: "{{ steps.site.url }}index.html"
  serve: {path: ./report, port: 0}
- id: hook                                     # a stand-in webhook for on_failure
  serve: {response: {status: 204, body: ""}}
"""


class _Quiet:
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the run's output is the steps', not every request's


class _Files(_Quiet, SimpleHTTPRequestHandler):
    pass


class _Fixed(_Quiet, BaseHTTPRequestHandler):
    status = 200
    body = b"ok"
    content_type = "text/plain; charset=utf-8"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    host, port = args.get("host", "127.0.0.1"), int(args.get("port", 0))
    if not args.get("allow_remote") and not _loopback(host):
        raise HandlerError(
            f"{host} can be reached from other machines: use 127.0.0.1, or say allow_remote: true"
        )
    handler = _handler(args, ctx.cwd)
    where = f"{args['path']}" if "path" in args else "a fixed answer"
    if ctx.dry_run:
        return {"changed": False, "dry_run": f"would serve {where} on {host}:{port or 'a free port'}"}
    try:
        server = _Server((host, port), handler)
    except OSError as exc:
        raise HandlerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    thread = threading.Thread(target=server.serve_forever, name=f"serve {host}:{port}", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    ctx.at_run_end(stop)
    bound_host, bound_port = str(server.server_address[0]), server.server_address[1]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    ctx.log(f"serving {where} on http://{shown}:{bound_port}/ until the run ends")
    return {
        "url": f"http://{shown}:{bound_port}/",
        "port": bound_port,
        "host": str(bound_host),
        "changed": False,
    }


def _handler(args: dict[str, Any], cwd: str) -> Any:
    if "path" in args:
        folder = os.path.join(cwd, os.path.expanduser(args["path"]))
        if not os.path.isdir(folder):
            raise HandlerError(f"cannot serve {folder}: no such folder")
        return partial(_Files, directory=folder)
    response = args.get("response") or {}
    return type(
        "_Answer",
        (_Fixed,),
        {
            "status": int(response.get("status", 200)),
            "body": str(response.get("body", "ok")).encode(),
            "content_type": response.get("content_type", "text/plain; charset=utf-8"),
        },
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
