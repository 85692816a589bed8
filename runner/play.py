"""``runbook play``: load the playbook, choose the output, handle signals, run, report.

Signals: the first SIGINT or SIGTERM cancels the run (running steps are stopped,
their process groups killed, pending steps not started, ``finally`` runs) and the
exit code is 130 or 143. A second SIGINT exits at once: every process group still
running is killed first, so nothing is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.errors import EXIT_INVALID, EXIT_SIGINT, PlaybookError
from runner.events import EventBus, JsonPrinter, PlainPrinter, Recorder
from runner.executor import Executor, RunOptions
from runner.history import HistoryRecorder, open_history
from runner.masking import SECRETS
from runner.playbook import Playbook, load_playbook


def choose_output(output: str) -> str:
    if output != "auto":
        return output
    return "pretty" if sys.stdout.isatty() and os.environ.get("TERM") != "dumb" else "plain"


def play_file(
    file: str,
    cli_vars: Sequence[str] = (),
    vars_files: Sequence[str] = (),
    text: str | None = None,
    **options: Any,
) -> int:
    """Load one playbook file (or ``text``, its content read earlier) and run it; return
    the exit code. ``options`` are ``play``'s."""
    try:
        playbook = load_playbook(file, cli_vars, vars_files, text)
    except PlaybookError as exc:
        for diagnostic in exc.diagnostics:
            print(SECRETS.text(diagnostic.format()), file=sys.stderr)
        return EXIT_INVALID
    return play(playbook, **options)


def play(
    playbook: Playbook,
    dry_run: bool = False,
    tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
    max_parallel: int | None = None,
    output: str = "auto",
    report: str | None = None,
    junit: str | None = None,
    verbose: bool = False,
    record: bool = True,
    trigger: str = "manual",
    run_id: str | None = None,
    history: Any = None,
) -> int:
    """Run a loaded playbook; return the exit code.

    ``record`` writes the run to the history (``--no-history`` turns it off), or to
    ``history`` when given (the scheduler's runs send their writes over a pipe); the
    scheduler passes ``trigger="schedule"`` and the ``run_id`` it chose, so it can
    complete the run's row itself if the run's process dies."""
    run_id = run_id or new_run_id()
    recorder = Recorder()
    sinks: list[Any] = [recorder]
    if record and history is None:
        history = open_history()
    if record and history is not None:
        sinks.append(HistoryRecorder(history, vars_digest(playbook.vars)))
    mode = choose_output(output)
    if mode == "none":  # the scheduler's runs: the history keeps everything
        pass
    elif mode == "json":
        sinks.append(JsonPrinter())
    elif mode == "pretty":
        from runner.console import LiveConsole

        sinks.append(LiveConsole(verbose=verbose, dry_run=dry_run, no_color=bool(os.environ.get("NO_COLOR"))))
    else:
        sinks.append(PlainPrinter(verbose=verbose, dry_run=dry_run))
    events = EventBus(run_id, sinks, mask=SECRETS.mask if SECRETS else None)
    options = RunOptions(
        dry_run=dry_run, tags=tags, skip_tags=skip_tags, max_parallel=max_parallel, trigger=trigger
    )
    executor = Executor(playbook, events, options, run_id=run_id)
    previous = _install_signal_handlers(executor)
    try:
        result = executor.run()
    finally:
        _restore_signal_handlers(previous)
        events.close()
        if history is not None:
            history.close()
    if report:
        from runner.reports import write_report

        write_report(Path(report), recorder)
    if junit:
        from runner.reports import write_junit

        write_junit(Path(junit), recorder)
    return result.exit_code


def new_run_id() -> str:
    """A run id that sorts by start time (so prefixes of recent runs are short and unique)."""
    return f"{int(time.time() * 1000):011x}"[-9:] + uuid.uuid4().hex[:5]


def vars_digest(variables: dict[str, Any]) -> str:
    """A short digest of the run's variables: tells runs with other inputs apart, reveals none."""
    text = json.dumps(variables, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _install_signal_handlers(executor: Executor) -> dict[int, Any]:
    interrupts = {"count": 0}

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        interrupts["count"] += 1
        if interrupts["count"] > 1 and signum == signal.SIGINT:
            executor.processes.kill_all(signal.SIGKILL)
            sys.stderr.write("\nrunbook: interrupted again: stopped at once\n")
            sys.stderr.flush()
            os._exit(EXIT_SIGINT)
        if interrupts["count"] == 1:
            sys.stderr.write(f"\nrunbook: {name}: cancelling the run (Ctrl-C again to stop at once)\n")
            sys.stderr.flush()
        executor.cancel(name)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, on_signal)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
