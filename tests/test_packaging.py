"""`pip install .` (not editable) gives a working runbook with its schema inside the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("runbook-*.whl")
    return built


def test_wheel_ships_the_schema_and_every_handler(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "runner/schemas/playbook.schema.json" in names
    for module in (REPO / "tasks").glob("*.py"):
        assert f"tasks/{module.name}" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "runbook = runner.__main__:main" in text


def test_installed_wheel_validates_from_a_venv(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    # Dependencies come from this interpreter's site-packages; runbook itself from the wheel.
    # The venv gets no pip of its own (seeding one costs seconds): this interpreter's pip
    # installs into it with --python, as the venv's own pip would.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
        timeout=120,
    )
    bin_dir = venv / "bin"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(bin_dir / "python"),
            "install",
            "--quiet",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import runner; print(runner.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv)), "runbook must come from the wheel, not the checkout"
    book = tmp_path / "book.yml"
    book.write_text("name: p\nsteps:\n  - wait: 1s\n  - shel: x\n")
    result = subprocess.run(
        [str(bin_dir / "runbook"), "validate", str(book)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{book}:4:5: step steps[1]: unknown handler 'shel'" in result.stdout
    shipped = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import importlib.resources as r; print(r.files('runner.schemas').joinpath("
            "'playbook.schema.json').read_text())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shipped.stdout) == json.loads((REPO / "schemas" / "playbook.schema.json").read_text())
