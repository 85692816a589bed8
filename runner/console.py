"""The live view on a terminal: spinners for running steps, then a summary table.

Imported only when output goes to a terminal (``--output pretty``, or ``auto`` on a
TTY): rich's live display is not paid for by runs whose output goes to a file or CI.
Finished steps print above the live area as they end; output lines of running steps
show there with ``-v``, or as the tail of a failure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from runner.events import Event, output_tail, status_text
from runner.units import format_duration, format_size

STYLES = {"ok": "green", "changed": "yellow", "failed": "bold red", "skipped": "dim", "cancelled": "magenta"}


class LiveConsole:
    def __init__(self, verbose: bool = False, dry_run: bool = False, no_color: bool = False):
        self.console = Console(no_color=no_color, highlight=False)
        self.verbose = verbose
        self.dry_run = dry_run
        self.running: dict[str, tuple[str, float, str]] = {}  # key → (label, start, last line)
        self.bytes: dict[str, tuple[int, int]] = {}  # key → (done, total)
        self.finished: list[Event] = []
        self.lock = threading.Lock()
        self.live = Live(
            console=self.console, refresh_per_second=10, transient=True, get_renderable=self.render
        )
        self.live.start()

    def render(self) -> Any:
        rows: list[Any] = []
        with self.lock:
            items = list(self.running.items())
        for key, (label, start, last) in items[:20]:
            elapsed = time.monotonic() - start
            line = Text.assemble((label, "bold"), f"  {format_duration(elapsed)}")
            done, total = self.bytes.get(key, (0, 0))
            if total:
                filled = int(20 * done / total)
                rate = done / elapsed if elapsed > 0 else 0
                line.append(
                    f"  [{'#' * filled}{'.' * (20 - filled)}] {format_size(done)}/{format_size(total)}"
                    f" {format_size(rate)}/s",
                    style="cyan",
                )
            elif last:
                line.append(f"  {last[:80]}", style="dim")
            rows.append(Spinner("dots", text=line))
        if len(items) > 20:
            rows.append(Text(f"... and {len(items) - 20} more running", style="dim"))
        return Group(*rows)

    def handle(self, event: Event) -> None:
        kind = event["event"]
        step = event.get("step") or {}
        key = f"{step.get('id')}|{step.get('label')}"
        if kind == "run_started":
            mode = " (dry run)" if event.get("dry_run") else ""
            self.console.print(Text.assemble(("runbook ", "bold"), f"{event['playbook']}{mode}"))
        elif kind == "step_started":
            with self.lock:
                self.running[key] = (step.get("label", ""), time.monotonic(), "")
        elif kind == "step_output":
            with self.lock:
                if key in self.running:
                    label, start, _ = self.running[key]
                    self.running[key] = (label, start, event["line"])
            if self.verbose:
                self.console.print(Text(f"  {step.get('label')} | ", style="dim") + Text(event["line"]))
        elif kind == "step_retry":
            self.console.print(
                Text(
                    f"  ↻ {step.get('label')}: attempt {event['attempt']} failed ({event['error']}); "
                    f"retrying in {format_duration(event['wait'])}",
                    style="yellow",
                )
            )
        elif kind == "step_finished":
            with self.lock:
                self.running.pop(key, None)
            self.finished.append(event)
            self.print_finished(event)
        elif kind == "run_finished":
            self.live.stop()
            self.summary(event)

    def progress(self, step: dict[str, Any], done: int, total: int) -> None:
        self.bytes[f"{step.get('id')}|{step.get('label')}"] = (done, total)

    def print_finished(self, event: Event) -> None:
        result = event.get("result") or {}
        status = event.get("status", "")
        text = Text.assemble(
            (
                f"{'✔' if status in ('ok', 'changed') else '✖' if status == 'failed' else '–'} ",
                STYLES.get(status, ""),
            ),
            (event["step"].get("label", ""), "bold"),
            (f"  {status_text(result)}", STYLES.get(status, "")),
            (f"  {format_duration(event.get('duration') or 0)}", "dim"),
        )
        if self.dry_run and result.get("dry_run"):
            text.append(f"  {result['dry_run']}", style="cyan")
        if event.get("error"):
            text.append(f"\n    {event['error']}", style="red")
        self.console.print(text)
        if status == "failed" and not self.verbose:
            for line in output_tail(result, 10):
                self.console.print(Text(f"    | {line}", style="dim"))

    def summary(self, event: Event) -> None:
        table = Table(title=None, show_edge=False, header_style="bold")
        table.add_column("step")
        table.add_column("status")
        table.add_column("attempts", justify="right")
        table.add_column("duration", justify="right")
        for step in self.finished:
            result = step.get("result") or {}
            table.add_row(
                step["step"].get("label", ""),
                Text(status_text(result), style=STYLES.get(step.get("status", ""), "")),
                str(step.get("attempts") or 0),
                format_duration(step.get("duration") or 0),
            )
        self.console.print(table)
        if event.get("error"):
            self.console.print(Text(event["error"], style="red"))
        style = "green" if event["status"] == "ok" else "bold red"
        self.console.print(Text(f"{event['status']} in {format_duration(event['duration'])}", style=style))

    def close(self) -> None:
        if self.live.is_started:
            self.live.stop()
