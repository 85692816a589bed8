"""Shared fixtures: every test runs with its own HOME and RUNBOOK_HOME and no proxies."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from .playing import MARKER_VAR, marked_processes

# Hypothesis keeps its caches in ./.hypothesis by default: keep them out of the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "runbook-hypothesis")
# In CI the property tests replay the same examples every run, so a landing never depends on
# luck; locally they explore new ones each run (and have found real bugs that way).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RUNBOOK_HOME", str(home / ".runbook"))
    monkeypatch.delenv("RUNBOOK_DEBUG", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    return home


def run_cli(
    *args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``runbook ARGS`` as a real process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def write(tmp_path: Path):
    """Write a file under tmp_path (dedenting nothing: YAML text is given as is)."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def marker(monkeypatch: pytest.MonkeyPatch):
    """A token in the environment of everything this test starts; none may outlive the test."""
    token = f"rbtest-{uuid.uuid4().hex}"
    monkeypatch.setenv(MARKER_VAR, token)
    yield token
    leftovers = marked_processes(token)
    described = [f"{p.pid}: {p.info['cmdline']}" for p in leftovers]
    for proc in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    assert not leftovers, f"processes left behind: {described}"
