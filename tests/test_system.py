"""The ``system`` handler (SPEC §5b) on psutil's real readings.

Nothing asserts a measured value, only relations that hold whatever the machine is doing:
a share between 0 and 100, used below total, the per-CPU load being the load over the
CPU count, a maximum of 100% never breached and a maximum of 0% breached exactly when
the measure is above 0. The CPU check runs while the test keeps one CPU busy (a child
process, stopped at the end), so "above 0%" is certain.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest

from .playing import Play, one_line_error, play

pytestmark = pytest.mark.usefixtures("marker")


def run_book(tmp_path, steps: list[dict[str, Any]], *args: str) -> Play:
    return play(tmp_path, json.dumps({"name": "system-tests", "steps": steps}), *args)


def test_every_metric_is_there_and_consistent(tmp_path):
    run = run_book(tmp_path, [{"id": "sys", "system": {"interval": "0.2s", "paths": ["/", str(tmp_path)]}}])
    assert run.returncode == 0, run.stderr
    result = run.step("sys")["result"]
    assert run.step("sys")["status"] == "ok" and result["breaches"] == []
    assert 0 <= result["cpu_percent"] <= 100
    assert len(result["cpu_percent_per_cpu"]) == result["cpu_count"] >= 1
    assert all(0 <= x <= 100 for x in result["cpu_percent_per_cpu"])
    assert result["load_per_cpu"] == pytest.approx(
        [x / result["cpu_count"] for x in result["load_average"]], abs=1e-3
    )
    memory, swap = result["memory"], result["swap"]
    assert 0 < memory["available"] <= memory["total"] and memory["used"] <= memory["total"]
    assert 0 <= memory["percent"] <= 100 and 0 <= swap["percent"] <= 100 and swap["used"] <= swap["total"]
    for path in ("/", str(tmp_path)):
        disk = result["disks"][path]
        assert disk["total"] == shutil.disk_usage(path).total
        assert disk["used"] + disk["free"] <= disk["total"]
        assert disk["percent"] + disk["free_percent"] == pytest.approx(100, abs=0.2)
    assert result["network"]["bytes_recv"] >= 0 and "packets_sent" in result["network"]
    started = datetime.fromisoformat(run.step("sys")["started"])
    assert result["uptime"] > 0 and datetime.fromisoformat(result["boot_time"]) < started


def test_thresholds_of_0_percent_fail_and_of_100_percent_pass(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        run = run_book(
            tmp_path,
            [
                {
                    "id": "zero",
                    "system": {
                        "interval": "0.3s",
                        "max_cpu_percent": 0,
                        "max_memory_percent": 0,
                        "max_swap_percent": 0,
                        "max_load_per_cpu": 0,
                        "min_disk_free": {"/": "100%"},
                    },
                    "continue_on_error": True,
                },
                {
                    "id": "hundred",
                    "system": {
                        "interval": "0.1s",
                        "max_cpu_percent": 100,
                        "max_memory_percent": 100,
                        "max_swap_percent": 100,
                        "min_disk_free": {"/": "0%", "/tmp": 0},
                    },
                },
            ],
        )
    finally:
        busy.kill()
        busy.wait()
    assert run.returncode == 0, run.stderr
    zero = run.step("zero")
    error = one_line_error(zero)
    result = zero["result"]
    breached = {b["metric"] for b in result["breaches"]}
    assert "cpu" in breached and "memory" in breached and "disk free on /" in breached
    # Swap and load may truly be 0 on a machine: breached exactly when measured above 0.
    assert ("swap" in breached) == (result["swap"]["percent"] > 0)
    assert ("load per cpu (1m)" in breached) == (result["load_per_cpu"][0] > 0)
    assert error.startswith(f"{len(breached)} thresholds breached: ")
    memory = next(b for b in result["breaches"] if b["metric"] == "memory")
    assert memory == {"metric": "memory", "measured": result["memory"]["percent"], "allowed": 0}
    assert f"memory {result['memory']['percent']:g}% > max 0%" in error
    assert run.step("hundred")["status"] == "ok"


def test_min_disk_free_as_a_size(tmp_path):
    total = shutil.disk_usage("/").total
    run = run_book(
        tmp_path,
        [
            {"id": "fits", "system": {"interval": "0.05s", "min_disk_free": {"/": 0}}},
            {"id": "cannot", "system": {"interval": "0.05s", "min_disk_free": {"/": total + 1}}},
        ],
    )
    assert run.returncode == 1
    assert run.step("fits")["status"] == "ok"
    error = one_line_error(run.step("cannot"))
    assert error.startswith("1 threshold breached: disk free on / ") and "< min" in error


def test_a_missing_disk_path_is_a_one_line_error(tmp_path):
    run = run_book(tmp_path, [{"id": "sys", "system": {"paths": [str(tmp_path / "nope")], "interval": 0.05}}])
    assert run.returncode == 1
    assert "does not exist" in one_line_error(run.step("sys"))


def test_runs_under_dry_run(tmp_path):
    run = run_book(
        tmp_path, [{"id": "sys", "system": {"interval": "0.05s", "max_memory_percent": 0}}], "--dry-run"
    )
    assert run.returncode == 1
    assert "memory" in one_line_error(run.step("sys"))
