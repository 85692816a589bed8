"""Start-up stays cheap: no heavy library is imported for --version or validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("boto3", "botocore", "requests", "rich", "psutil")


def _imported_modules(args: list[str], cwd: Path) -> set[str]:
    """Top-level modules a real runbook process imported (from python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            modules.add(name.split(".")[0])
    assert modules, result.stderr
    return modules


def test_version_imports_no_library(tmp_path: Path):
    modules = _imported_modules(["--version"], tmp_path)
    assert not modules & {"yaml", "jinja2", "jsonschema", "click", *HEAVY}


def test_validate_of_fifty_steps_imports_no_heavy_library(tmp_path: Path):
    lines = ["name: fifty", "vars: {dir: /tmp}", "steps:"]
    shapes = [
        '  - id: s{i}\n    shell: "echo {{{{ dir }}}} {i}"',
        '  - id: s{i}\n    http: {{url: "http://127.0.0.1:9/{i}"}}',
        '  - id: s{i}\n    s3_upload: {{src: "{{{{ dir }}}}", bucket: bucket-{i}}}',
        "  - id: s{i}\n    check_port: {{port: {p}}}",
        '  - id: s{i}\n    glob: {{pattern: "*.log", older_than: 7d}}',
    ]
    lines += [shapes[i % len(shapes)].format(i=i, p=1000 + i) for i in range(50)]
    book = tmp_path / "fifty.yml"
    book.write_text("\n".join(lines) + "\n")
    check = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(book)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout
    modules = _imported_modules(["validate", str(book)], tmp_path)
    assert "jsonschema" in modules and "jinja2" in modules  # the check did run
    assert not modules & set(HEAVY)
