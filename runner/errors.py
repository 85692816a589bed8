"""The one exception tree of runbook, and the exit code each family maps to.

    RunbookError                     exit 1   anything runbook reports without a traceback
    ├── UsageError                   exit 2   the command line is wrong (unknown file, bad -e)
    ├── PlaybookError                exit 2   the playbook is invalid; holds every Diagnostic found
    ├── TemplateError                exit 1   a template failed while the run was going on
    └── HandlerError                 exit 1   a handler failed; its message is one actionable line

Library errors (yaml, jinja2, OSError, requests, botocore) are translated into these at
the edge where they happen, with ``raise ... from exc`` so ``--debug`` still shows the
cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.diagnostics import Diagnostic

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class RunbookError(Exception):
    """Base of every error runbook reports to the user as one line."""

    exit_code = EXIT_FAILED


class UsageError(RunbookError):
    """The command line is wrong: a missing file, a malformed ``-e``, an unknown option value."""

    exit_code = EXIT_INVALID


class PlaybookError(RunbookError):
    """The playbook is invalid. Carries every problem found, not only the first."""

    exit_code = EXIT_INVALID

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class TemplateError(RunbookError):
    """A template failed when it was rendered during the run (exit 1: the step fails)."""


class HandlerError(RunbookError):
    """A handler could not do its work; the message says why and what to do.

    ``result`` holds what the handler found before failing (a command's ``rc``,
    ``stdout`` and ``stderr``, say): it is kept in the step's result.
    """

    def __init__(self, message: str, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.result = dict(result or {})
