"""Text for ``runbook history`` (a table of runs) and ``runbook show`` (one run, step by step)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runner.units import format_duration

Styler = Callable[..., str]
STATUS_COLORS = {
    "ok": "green",
    "changed": "yellow",
    "failed": "red",
    "cancelled": "magenta",
    "interrupted": "red",
    "running": "cyan",
    "skipped": "bright_black",
}


def _status(status: str | None, style: Styler) -> str:
    text = status or "?"
    return style(text, fg=STATUS_COLORS.get(text))


def _when(iso: str | None) -> str:
    """``2026-11-26 14:03:07`` from an ISO 8601 time (the offset is the local one)."""
    return (iso or "")[:19].replace("T", " ")


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _table(header: Sequence[str], rows: list[list[str]], plain_rows: list[list[str]]) -> list[str]:
    """Columns as wide as their widest cell; widths come from the text without colour codes."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *plain_rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
    for row, plain_row in zip(rows, plain_rows, strict=True):
        cells = [
            cell + " " * (width - len(plain))
            for cell, plain, width in zip(row, plain_row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def runs_table(runs: list[dict[str, Any]], style: Styler) -> str:
    if not runs:
        return "no runs recorded yet (runbook play records every run)"
    header = ["ID", "PLAYBOOK", "STATUS", "TRIGGER", "STARTED", "DURATION", "EXIT"]
    plain_rows = [
        [
            run["id"],
            run["playbook"] or "?",
            run["status"] or "?",
            run["trigger"],
            _when(run["started"]),
            _duration(run["duration"]),
            "" if run["exit_code"] is None else str(run["exit_code"]),
        ]
        for run in runs
    ]
    rows = [[*row[:2], _status(row[2], style), *row[3:]] for row in plain_rows]
    return "\n".join(_table(header, rows, plain_rows))


def run_text(report: dict[str, Any], style: Styler) -> str:
    run = report["run"]
    lines = [
        f"run {run['id']}: {run['playbook']} ({run['path']})",
        f"  status   {_status(run['status'], style)}"
        + ("" if run["exit_code"] is None else f" (exit {run['exit_code']})"),
        f"  trigger  {run['trigger']} on {run['host']} by {run['user']}",
        f"  started  {_when(run['started'])}, took {_duration(run['duration'])}",
    ]
    if run.get("error"):
        lines.append(f"  error    {run['error']}")
    if not report["steps"]:
        lines.append("  no steps recorded")
    for step in report["steps"]:
        attempts = f", {step['attempts']} attempts" if (step["attempts"] or 1) > 1 else ""
        lines.append("")
        lines.append(
            f"{_status(step['status'], style)}  {step['label']}  ({_duration(step['duration'])}{attempts})"
        )
        if step.get("error"):
            lines.append(f"  error: {step['error']}")
        for line in (step.get("output") or "").splitlines():
            lines.append(f"  | {line}")
    return "\n".join(lines)
