"""`runbook validate` against fixture playbooks, run as a user runs it: a real subprocess.

Every ``tests/playbooks/invalid/*.yml`` starts with comment lines::

    # expect: LINE:COL substring

and must make ``runbook validate`` exit 2, with, for each such line, an output line that
starts with ``FILE:LINE:COL:`` and contains the substring. Every output line must have
the ``FILE:LINE:COL: `` form (the last stderr line may be the summary ``FILE: N problems``),
and nothing may print a traceback. Every ``tests/playbooks/valid/*.yml`` must exit 0.

The fixtures of a folder are validated by one subprocess, ``python -m runner validate
NAME...`` run in that folder (so relative paths are the user's), once, when the first case
asks for its result: each process start costs about as much as the checks of all the files.
``validate`` checks the files one after another and reports each one's problems in its own
lines: its stdout is each file's diagnostics (or its ``NAME: ok`` line) in order, and its
stderr each invalid file's ``NAME: N problems`` summary, which tell where each file's lines
end. That split is checked (every line names its file, the counts add up, the exit code is
2 exactly when some file has problems); should it not hold (a crash, a line naming another
file), each fixture of that folder is validated by a subprocess of its own instead, as many
at a time as there are CPUs, and each case judges that process's exit code and output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "playbooks"
INVALID = sorted((HERE / "invalid").glob("*.yml"))
VALID = sorted((HERE / "valid").glob("*.yml"))

EXPECT = re.compile(r"^#\s*expect:\s*(\d+):(\d+)\s+(.+?)\s*$")
POSITIONED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): \S")

# Fixtures whose expectation runbook does not meet yet ("folder/name" -> the bug). Each is
# an xfail(strict=True): once the bug is fixed, the case passes and must leave this list.
KNOWN_BUGS: dict[str, str] = {}


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in (self.stdout + self.stderr).splitlines() if line.strip()]


def _run_validate(folder: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("RUNBOOK_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "runner", "validate", *names],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _validate(path: Path) -> Outcome:
    proc = _run_validate(path.parent, [path.name])
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


SUMMARY = re.compile(r"^(?P<file>.+): (?P<count>\d+) problems?$")


def _validate_together(paths: list[Path]) -> dict[Path, Outcome] | None:
    """Validate the fixtures of one folder in one process and split its output per file, as
    each file would have had it alone; None when the output does not split cleanly."""
    proc = _run_validate(paths[0].parent, [path.name for path in paths])
    if proc.returncode not in (0, 2) or "Traceback" in proc.stdout + proc.stderr:
        return None
    out = [line for line in proc.stdout.splitlines() if line.strip()]
    summaries: dict[str, tuple[int, str]] = {}
    for line in proc.stderr.splitlines():
        if not line.strip():
            continue
        match = SUMMARY.match(line)
        if match is None or match["file"] in summaries:
            return None
        summaries[match["file"]] = (int(match["count"]), line)
    if not summaries.keys() <= {path.name for path in paths}:
        return None
    if proc.returncode != (2 if summaries else 0):
        return None
    found: dict[Path, Outcome] = {}
    at = 0
    for path in paths:
        if path.name in summaries:
            count, summary = summaries[path.name]
            mine, code, err = out[at : at + count], 2, summary + "\n"
        else:
            mine, code, err = out[at : at + 1], 0, ""
        at += len(mine)
        if not mine or not all(line.startswith(f"{path.name}:") for line in mine):
            return None
        found[path] = Outcome(code, "".join(line + "\n" for line in mine), err)
    return found if at == len(out) else None


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest) -> dict[Path, Outcome]:
    """Validate every selected fixture once: one subprocess per folder, or, for a folder whose
    output does not split per file, one per fixture, as many at a time as there are CPUs."""
    paths = [
        item.callspec.params["path"]
        for item in request.session.items
        if item.module is request.module and "path" in getattr(getattr(item, "callspec", None), "params", {})
    ]
    folders: dict[Path, list[Path]] = {}
    for path in paths:
        folders.setdefault(path.parent, []).append(path)
    workers = max(2, os.cpu_count() or 2)
    found: dict[Path, Outcome] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for together in pool.map(_validate_together, folders.values()):
            found.update(together or {})
        alone = [path for path in paths if path not in found]
        found.update(zip(alone, pool.map(_validate, alone), strict=True))
    return found


def _expectations(path: Path) -> list[tuple[int, int, str]]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        match = EXPECT.match(line)
        if match:
            found.append((int(match[1]), int(match[2]), match[3]))
    return found


def _cases(paths: list[Path]) -> list[object]:
    cases = []
    for path in paths:
        bug = KNOWN_BUGS.get(f"{path.parent.name}/{path.name}")
        marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
        cases.append(pytest.param(path, id=path.stem, marks=marks))
    return cases


def _show(outcome: Outcome) -> str:
    return f"exit {outcome.returncode}\n--- stdout\n{outcome.stdout}--- stderr\n{outcome.stderr}"


def test_there_are_enough_fixtures() -> None:
    assert len(INVALID) >= 45
    assert len(VALID) >= 8
    names = {f"{p.parent.name}/{p.name}" for p in [*INVALID, *VALID]}
    assert not set(KNOWN_BUGS) - names, "KNOWN_BUGS names a fixture that does not exist"
    for path in INVALID:
        assert _expectations(path), f"{path.name} has no '# expect: LINE:COL text' line"


@pytest.mark.parametrize("path", _cases(INVALID))
def test_invalid_playbook(path: Path, outcomes: dict[Path, Outcome]) -> None:
    outcome = outcomes[path]
    shown = _show(outcome)
    assert "Traceback" not in outcome.stdout + outcome.stderr, shown
    assert outcome.returncode == 2, shown

    summary = re.compile(rf"^{re.escape(path.name)}: \d+ problems?$")
    stderr_lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    for line in outcome.lines:
        if line == (stderr_lines[-1] if stderr_lines else None) and summary.match(line):
            continue
        assert POSITIONED.match(line), f"not a FILE:LINE:COL: line: {line!r}\n{shown}"

    missing = []
    for line_no, col, text in _expectations(path):
        prefix = f"{path.name}:{line_no}:{col}:"
        if not any(out.startswith(prefix) and text in out for out in outcome.lines):
            missing.append(f"{prefix} ... {text}")
    assert not missing, "not reported:\n  " + "\n  ".join(missing) + "\n" + shown


@pytest.mark.parametrize("path", _cases(VALID))
def test_valid_playbook(path: Path, outcomes: dict[Path, Outcome]) -> None:
    outcome = outcomes[path]
    shown = _show(outcome)
    assert "Traceback" not in outcome.stdout + outcome.stderr, shown
    assert outcome.returncode == 0, shown
    assert outcome.stdout.startswith(f"{path.name}: ok"), shown
