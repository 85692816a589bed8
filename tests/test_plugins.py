"""Third-party handlers through the ``runbook.tasks`` entry-point group.

A real distribution (tests/plugin_pkg) is installed with pip into a folder that the
runbook processes under test see on PYTHONPATH.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_cli

PLUGIN_SOURCE = Path(__file__).parent / "plugin_pkg"


def _clash_source(folder: Path) -> Path:
    """A copy of the plugin named runbook-clash whose handler takes the built-in name ``shell``."""
    (folder / "pyproject.toml").write_text(
        (PLUGIN_SOURCE / "pyproject.toml")
        .read_text()
        .replace('name = "runbook-greet"', 'name = "runbook-clash"')
        .replace("greet = ", "shell = ")
    )
    (folder / "runbook_greet.py").write_text(
        (PLUGIN_SOURCE / "runbook_greet.py").read_text().replace('name = "greet"', 'name = "shell"')
    )
    return folder


@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The plugin (``greet``) and the clashing one (``clash``), each installed with pip into a
    folder of its own; the two installs run at once (each takes seconds)."""
    jobs = {
        "greet": (PLUGIN_SOURCE, tmp_path_factory.mktemp("plugin-site")),
        "clash": (_clash_source(tmp_path_factory.mktemp("clash")), tmp_path_factory.mktemp("clash-site")),
    }
    pips = {}
    try:
        for name, (source, target) in jobs.items():
            pips[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--no-build-isolation",
                    "--target",
                    str(target),
                    str(source),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for name, pip in pips.items():
            _, err = pip.communicate(timeout=300)
            assert pip.returncode == 0, f"pip install of {jobs[name][0]} failed: {err}"
    finally:
        for pip in pips.values():
            if pip.poll() is None:
                pip.kill()
                pip.wait(timeout=30)
    return {name: target for name, (_, target) in jobs.items()}


@pytest.fixture
def plugin_site(sites: dict[str, Path]) -> Path:
    return sites["greet"]


def test_plugin_is_listed_and_documented(plugin_site: Path):
    env = {"PYTHONPATH": str(plugin_site)}
    listing = run_cli("tasks", env=env)
    assert listing.returncode == 0
    assert any(
        line.startswith("greet ") and "Greet someone by name." in line for line in listing.stdout.splitlines()
    )
    page = run_cli("tasks", "greet", env=env)
    assert page.returncode == 0
    assert "runbook-greet" in page.stdout, "the page names the distribution"
    assert "who *" in page.stdout and "message" in page.stdout


def test_plugin_arguments_are_validated(plugin_site: Path, tmp_path: Path):
    env = {"PYTHONPATH": str(plugin_site)}
    good = tmp_path / "good.yml"
    good.write_text("name: g\nsteps:\n  - greet: {who: world, times: 2}\n")
    assert run_cli("validate", str(good), env=env).returncode == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("name: b\nsteps:\n  - greet: {whom: world}\n")
    result = run_cli("validate", str(bad), env=env)
    assert result.returncode == 2
    assert f"{bad}:3:13: step steps[0] (greet.whom): unknown argument 'whom'" in result.stdout
    assert "missing required argument 'who'" in result.stdout
    without_plugin = run_cli("validate", str(good))
    assert without_plugin.returncode == 2
    assert "unknown handler 'greet'" in without_plugin.stdout


def test_plugin_is_in_the_printed_schema(plugin_site: Path):
    result = run_cli("schema", env={"PYTHONPATH": str(plugin_site)})
    schema = json.loads(result.stdout)
    assert "greet" in schema["$defs"]["args"]
    assert {"required": ["greet"]} in schema["$defs"]["task_step"]["oneOf"]


def test_a_plugin_may_not_take_a_builtin_name(sites: dict[str, Path]):
    result = run_cli("tasks", env={"PYTHONPATH": str(sites["clash"])})
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "handler 'shell' is defined twice" in message
    assert "built-in tasks.shell" in message and "runbook-clash" in message
    assert "Traceback" not in result.stderr
