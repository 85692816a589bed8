"""The scheduler's HTTP side (``runbook schedule --http HOST:PORT``), SPEC §7.

``GET /healthz``: 200 and JSON (uptime, each schedule with its next run, last status,
last duration and failure streak), or 503 once a schedule has failed
``--unhealthy-after`` times in a row. ``GET /runs``: recent runs as JSON
(``?playbook=``, ``?status=``, ``?limit=``). ``GET /runs/ID``: one run in the
``--report`` format. ``GET /``: an HTML page of the schedules, the recent runs and a
timeline of the last 24 hours per playbook (inline SVG; it reloads itself every 10 s).

It binds 127.0.0.1 unless told otherwise, and refuses an address other machines can
reach unless ``--http-token`` is given; every request must then carry the token
(``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` for a browser).
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import json
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runner.errors import UsageError
from runner.events import epoch_of
from runner.history import History
from runner.units import format_duration

STATUS_COLORS = {
    "ok": "#2e9d57",
    "failed": "#d03838",
    "interrupted": "#b3261e",
    "cancelled": "#a855f7",
    "running": "#2f80ed",
    "skipped": "#9aa0a6",
}
TIMELINE_HOURS = 24


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(
            f"--http {text!r}: expected HOST:PORT, such as 127.0.0.1:8321 (port 0 picks a free one)"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise UsageError(f"--http: cannot resolve {host!r}") from None
    return all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


class StatusServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], daemon: Any, token: str | None):
        self.daemon = daemon
        self.token = token
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, StatusHandler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def start_status_server(daemon: Any, address: str, token: str | None) -> StatusServer:
    host, port = parse_address(address)
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--http {address}: other machines could reach this address; give --http-token TOKEN"
            " (then every request needs it) or bind 127.0.0.1"
        )
    try:
        server = StatusServer((host, port), daemon, token)
    except OSError as exc:
        raise UsageError(f"--http {address}: cannot listen there: {exc.strerror or exc}") from exc
    threading.Thread(target=server.serve_forever, name="status-http", daemon=True).start()
    return server


class StatusHandler(BaseHTTPRequestHandler):
    server: StatusServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the daemon logs runs, not page views

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if not self._authorized(query):
            self._send(401, "application/json", json.dumps({"error": "a valid token is required"}))
            return
        try:
            if url.path == "/healthz":
                health = self.server.daemon.health()
                self._json(503 if health["status"] != "ok" else 200, health)
            elif url.path == "/runs":
                self._json(200, _runs(query))
            elif url.path.startswith("/runs/"):
                run_id = url.path[len("/runs/") :]
                store = History()
                try:
                    self._json(200, store.report(run_id))
                except UsageError as exc:
                    self._json(404, {"error": str(exc)})
                finally:
                    store.close()
            elif url.path in ("/", "/index.html"):
                self._send(
                    200,
                    "text/html; charset=utf-8",
                    page(self.server.daemon.health(), _runs({"limit": "200"})),
                )
            else:
                self._json(404, {"error": f"no page {url.path}; try /, /healthz, /runs or /runs/ID"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _authorized(self, query: dict[str, str]) -> bool:
        token = self.server.token
        if not token:
            return True
        header = self.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else query.get("token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    def _json(self, status: int, data: Any) -> None:
        self._send(status, "application/json", json.dumps(data, indent=2, default=str))

    def _send(self, status: int, kind: str, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def _runs(query: dict[str, str]) -> list[dict[str, Any]]:
    try:
        limit = max(1, min(1000, int(query.get("limit", "50"))))
    except ValueError:
        limit = 50
    store = History()
    try:
        return store.runs(playbook=query.get("playbook"), status=query.get("status"), limit=limit)
    finally:
        store.close()


# -- the page ----------------------------------------------------------------------------------

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; }
td, th { padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: left; }
td.status { font-weight: 600; } td.failed, td.interrupted { color: #d03838; } td.ok { color: #2e9d57; }
td.running { color: #2f80ed; } td.skipped { color: #6b7280; } td.cancelled { color: #a855f7; }
tr.failed td, tr.interrupted td { background: #fdecec; }
.badge { padding: .1em .5em; border-radius: .8em; color: white; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; }
"""


def _status_cell(status: str | None) -> str:
    text = status or "never run"
    mark = {"failed": "✗ ", "interrupted": "✗ ", "ok": "✓ "}.get(text, "")
    return f'<td class="status {html.escape(text)}">{mark}{html.escape(text)}</td>'


def page(health: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """The status page: schedules, a timeline of the last 24 hours, recent runs."""
    color = "#2e9d57" if health["status"] == "ok" else "#d03838"
    rows = []
    for s in health["schedules"]:
        name, running = html.escape(s["playbook"]), html.escape(", ".join(s["running"]) or "-")
        rows.append(
            f'<tr class="schedule" data-playbook="{name}"><td>{name}</td>'
            f"<td><code>{html.escape(s['schedule'])}</code></td><td>{html.escape(s['next_run'])}</td>"
            f"{_status_cell(s['last_status'])}<td>{s['consecutive_failures']}</td><td>{running}</td></tr>"
        )
    run_rows = []
    for run in runs[:50]:
        duration = "-" if run["duration"] is None else format_duration(run["duration"])
        status = run["status"] or ""
        run_rows.append(
            f'<tr class="run {html.escape(status)}" data-run="{html.escape(run["id"])}"><td><code>'
            f'<a href="/runs/{html.escape(run["id"])}">{html.escape(run["id"])}</a></code></td>'
            f"<td>{html.escape(run['playbook'])}</td>{_status_cell(status)}<td>{html.escape(run['trigger'])}</td>"
            f"<td>{html.escape((run['started'] or '')[:19].replace('T', ' '))}</td><td>{duration}</td></tr>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>runbook schedule: {html.escape(health["status"])}</title><style>{_STYLE}</style></head>
<body>
<h1>runbook schedule on {html.escape(health["host"])}
 <span class="badge" id="health" style="background:{color}">{html.escape(health["status"])}</span></h1>
<p>Up {format_duration(health["uptime"])}, since {html.escape(health["started"])}.
 Unhealthy after {health["unhealthy_after"]} failures in a row.</p>
<h2>Schedules</h2>
<table id="schedules"><tr><th>Playbook</th><th>Schedule</th><th>Next run</th><th>Last status</th>
<th>Failures in a row</th><th>Running</th></tr>
{"".join(rows)}</table>
<h2>Last {TIMELINE_HOURS} hours</h2>
{timeline([s["playbook"] for s in health["schedules"]], runs)}
<h2>Recent runs</h2>
<table id="runs"><tr><th>Run</th><th>Playbook</th><th>Status</th><th>Trigger</th><th>Started</th>
<th>Duration</th></tr>
{"".join(run_rows) or '<tr><td colspan="6">no runs yet</td></tr>'}</table>
</body></html>
"""


def timeline(playbooks: list[str], runs: list[dict[str, Any]], now: float | None = None) -> str:
    """One row per scheduled playbook; each run a bar from its start, as long as it took (2 px at least)."""
    now = time.time() if now is None else now
    start = now - TIMELINE_HOURS * 3600
    label_width, width, row = 180, 720, 22
    names = playbooks
    parts = []
    for hour in range(0, TIMELINE_HOURS + 1, 6):
        x = label_width + width * hour / TIMELINE_HOURS
        when = datetime.fromtimestamp(start + hour * 3600).strftime("%H:%M")
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{row * len(names)}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{row * len(names) + 14}" text-anchor="middle">{when}</text>')
    for index, name in enumerate(names):
        y = index * row
        parts.append(f'<text x="0" y="{y + 15}">{html.escape(name[:28])}</text>')
        for run in runs:
            began = epoch_of(run["started"])
            if run["playbook"] != name or began is None or began < start:
                continue
            x = label_width + width * (began - start) / (TIMELINE_HOURS * 3600)
            length = max(2.0, width * (run["duration"] or 0) / (TIMELINE_HOURS * 3600))
            status = run["status"] or ""
            tip = html.escape(f"{run['id']} {status} {run['started']}")
            fill = STATUS_COLORS.get(status, "#888")
            parts.append(
                f'<rect class="{html.escape(status)}" x="{x:.1f}" y="{y + 4}" width="{length:.1f}"'
                f' height="14" fill="{fill}"><title>{tip}</title></rect>'
            )
    height = row * len(names) + 20
    return (
        f'<svg id="timeline" width="{label_width + width + 20}" height="{height}" role="img"'
        f' aria-label="runs of the last {TIMELINE_HOURS} hours">{"".join(parts)}</svg>'
    )
