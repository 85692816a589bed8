"""The toolbox's example playbooks (``playbooks/``) run as shipped, each in a real process.

Only their output folders are pointed into the test's folder (``-e``), and the monitor's
thresholds are made unreachable so a busy test machine cannot fail it; the reports are
read back and checked against each other, not against fixed values.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from .conftest import REPO
from .playing import Play, play

pytestmark = pytest.mark.usefixtures("marker")


def run_example(tmp_path: Path, name: str, *args: str) -> Play:
    text = (REPO / "playbooks" / name).read_text()
    return play(tmp_path, text, *args, name=name)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_resource_monitor_records_its_readings(tmp_path):
    metrics = tmp_path / "metrics.csv"
    for _ in range(2):
        run = run_example(
            tmp_path,
            "resource-monitor.yml",
            "-e", f"metrics_log={metrics}",
            "-e", f"alert_log={tmp_path / 'alerts.csv'}",
            "-e", "max_cpu_percent=100",
            "-e", "max_load_per_cpu=1000",
            "-e", "max_memory_percent=100",
            "-e", "max_swap_percent=100",
            "-e", "min_root_free=0%",
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
    recorded = rows(metrics)
    assert len(recorded) == 2  # appended, one header
    assert (
        float(recorded[-1]["root_free_percent"])
        == run.step("resources")["result"]["disks"]["/"]["free_percent"]
    )
    assert not (tmp_path / "alerts.csv").exists()


def test_resource_monitor_alerts_on_a_breach(tmp_path):
    alerts = tmp_path / "alerts.csv"
    run = run_example(
        tmp_path,
        "resource-monitor.yml",
        "-e", f"alert_log={alerts}",
        "-e", f"metrics_log={tmp_path / 'metrics.csv'}",
        "-e", "max_memory_percent=0",
        "-e", "attempts=1",
    )  # fmt: skip
    assert run.returncode == 1
    logged = rows(alerts)
    assert len(logged) == 1 and logged[0]["alert"] == run.step("resources")["error"]
    assert "memory" in logged[0]["alert"]


def test_log_cleanup_deletes_old_logs_and_reports_them(tmp_path):
    reports = tmp_path / "reports"
    run = run_example(tmp_path, "log-cleanup.yml", "-e", f"report_dir={reports}")
    assert run.returncode == 0, run.stderr
    cleanup = run.step("cleanup")["result"]
    assert cleanup["count"] == 8  # 2 services x 4 sample ages past 14 days
    (report,) = reports.glob("cleanup-*.json")
    data = json.loads(report.read_text())
    assert data["deleted"] == cleanup["deleted"] and data["bytes_freed"] == cleanup["bytes_freed"]
    deleted = rows(reports / "deleted.csv")
    assert [r["path"] for r in deleted] == cleanup["deleted"]
    assert sum(int(r["bytes"]) for r in deleted) == cleanup["bytes_freed"]
    assert not Path(data["log_dir"]).exists()  # the sample logs were removed


def test_inventory_report_writes_its_csv_files(tmp_path):
    reports = tmp_path / "inventory"
    run = run_example(tmp_path, "inventory-report.yml", "-e", f"report_dir={reports}")
    assert run.returncode == 0, run.stderr
    host = run.step("host")["result"]
    (row,) = rows(reports / "hosts.csv")
    assert int(row["cpus"]) == host["cpu_count"]
    assert [r["path"] for r in rows(reports / "disks.csv")] == ["/", "/tmp"]
    services = rows(reports / "services.csv")
    results = run.step("services")["result"]["results"]
    assert [(s["service"], int(s["running"])) for s in services] == [(r["item"], r["count"]) for r in results]
    assert len(rows(reports / "processes.csv")) == sum(r["count"] for r in results)
    inventory = json.loads((reports / "inventory.json").read_text())
    assert inventory["resources"]["cpu_count"] == host["cpu_count"]
    assert inventory["facts"]["hostname"] == inventory["host"] == row["host"]
