"""Measure CPU, load, memory, swap, disks and network (psutil), and alert past thresholds.

CPU use is sampled over ``interval`` (default 0.5s). The result holds every metric; with
thresholds the step fails when any is breached, and its error lists each breach with the
measured and the allowed value, so a scheduled playbook with an ``on_failure`` step is a
resource monitor. Thresholds: ``max_cpu_percent``, ``max_memory_percent`` (memory not
available to programs: psutil's ``percent``), ``max_swap_percent``, ``max_load_per_cpu``
(the load average of ``load_window`` minutes, default 1, divided by the CPU count), and
``min_disk_free``, a mapping from a path to a size (``10GiB``) or a share (``"15%"``) of
its file system that must stay free (free space as ``df`` shows it, for unprivileged
users). Disks are measured for ``paths`` (default ``/``) and every path of
``min_disk_free``. A breach is strictly above a maximum or below a minimum: a maximum of
100% never fails, a maximum of 0% fails as soon as anything is used. system only reads:
it runs under ``--dry-run`` too.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION, SIZE
from runner.units import format_size, parse_duration, parse_size

name = "system"
_PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
_SHARE = r"^\s*\d+(?:\.\d*)?\s*%\s*$"
schema = {
    "type": "object",
    "properties": {
        "interval": {**DURATION, "default": "0.5s", "description": "How long CPU use is sampled."},
        "paths": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Paths whose file systems' usage is measured (default: /).",
        },
        "max_cpu_percent": {**_PERCENT, "description": "Fail when CPU use is above this."},
        "max_memory_percent": {**_PERCENT, "description": "Fail when memory use is above this."},
        "max_swap_percent": {**_PERCENT, "description": "Fail when swap use is above this."},
        "max_load_per_cpu": {
            "type": "number",
            "minimum": 0,
            "description": "Fail when the load average per CPU is above this.",
        },
        "load_window": {
            "enum": [1, 5, 15],
            "default": 1,
            "description": "Minutes of the load average max_load_per_cpu checks.",
        },
        "min_disk_free": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [SIZE, {"type": "string", "pattern": _SHARE, "title": 'a share such as "10%"'}]
            },
            "description": 'Fail when less is free: {path: size or "N%"}.',
        },
    },
    "additionalProperties": False,
}
result = {
    "cpu_percent": "CPU use over the interval, all CPUs (0-100)",
    "cpu_percent_per_cpu": "CPU use of each CPU",
    "cpu_count": "logical CPUs",
    "load_average": "[1, 5, 15] minute load averages",
    "load_per_cpu": "the load averages divided by the CPU count",
    "memory": "{total, available, used, free, percent} (bytes; percent not available)",
    "swap": "{total, used, free, percent}",
    "disks": "{path: {total, used, free, percent, free_percent}} (bytes)",
    "network": "{bytes_sent, bytes_recv, packets_sent, packets_recv, errin, errout, dropin, dropout}",
    "boot_time": "when the machine started (ISO 8601)",
    "uptime": "seconds since boot",
    "breaches": "list of {metric, measured, allowed} for each threshold breached",
}
example = """\
- id: resources
  system:
    max_cpu_percent: 95
    max_memory_percent: 90
    max_load_per_cpu: 2
    min_disk_free: {"/": 10GiB, "/var": "15%"}
"""


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    import psutil

    interval = parse_duration(args.get("interval", "0.5s"))
    if interval <= 0:
        raise HandlerError("interval must be more than 0: CPU use is measured over a span of time")
    paths = list(dict.fromkeys([*(args.get("paths") or ["/"]), *(args.get("min_disk_free") or {})]))
    disks = {path: _disk(psutil, path, ctx.cwd) for path in paths}
    # Both counters start now and are read after the interval: one sample, all CPUs and each.
    psutil.cpu_percent(None)
    psutil.cpu_percent(None, percpu=True)
    if ctx.wait(interval):
        raise HandlerError("cancelled while measuring CPU use")
    cpu = psutil.cpu_percent(None)
    per_cpu = psutil.cpu_percent(None, percpu=True)
    count = psutil.cpu_count() or 1
    load = [round(x, 2) for x in psutil.getloadavg()]
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    net = psutil.net_io_counters()
    boot = psutil.boot_time()
    out: dict[str, Any] = {
        "cpu_percent": cpu,
        "cpu_percent_per_cpu": per_cpu,
        "cpu_count": count,
        "load_average": load,
        "load_per_cpu": [round(x / count, 3) for x in load],
        "memory": {k: getattr(memory, k) for k in ("total", "available", "used", "free", "percent")},
        "swap": {k: getattr(swap, k) for k in ("total", "used", "free", "percent")},
        "disks": disks,
        "network": net._asdict() if net is not None else {},
        "boot_time": datetime.fromtimestamp(boot, timezone.utc).astimezone().isoformat(timespec="seconds"),
        "uptime": round(time.time() - boot, 1),
        "changed": False,
    }
    breaches = _breaches(args, out)
    out["breaches"] = breaches
    if breaches:
        listed = "; ".join(f"{b['metric']} {b['measured_text']} {b['allowed_text']}" for b in breaches)
        for b in breaches:
            del b["measured_text"], b["allowed_text"]
        word = "threshold" if len(breaches) == 1 else "thresholds"
        raise HandlerError(f"{len(breaches)} {word} breached: {listed}", result=out)
    return out


def _disk(psutil: Any, path: str, cwd: str) -> dict[str, Any]:
    full = os.path.join(cwd, os.path.expanduser(path))
    try:
        usage = psutil.disk_usage(full)
    except FileNotFoundError:
        raise HandlerError(f"disk path {full} does not exist") from None
    except OSError as exc:
        raise HandlerError(f"cannot measure the disk of {full}: {exc.strerror or exc}") from None
    # free is what unprivileged users may still write; percent is used / (used + free), as df shows
    available = usage.used + usage.free
    return {
        "total": usage.total,
        "used": usage.used,
        "free": usage.free,
        "percent": usage.percent,
        "free_percent": round(100.0 * usage.free / available, 1) if available else 0.0,
    }


def _breaches(args: dict[str, Any], out: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def above(metric: str, measured: float, allowed: float, unit: str = "%") -> None:
        if measured > allowed:
            found.append(
                {
                    "metric": metric,
                    "measured": measured,
                    "allowed": allowed,
                    "measured_text": f"{measured:g}{unit}",
                    "allowed_text": f"> max {allowed:g}{unit}",
                }
            )

    if args.get("max_cpu_percent") is not None:
        above("cpu", out["cpu_percent"], args["max_cpu_percent"])
    if args.get("max_memory_percent") is not None:
        above("memory", out["memory"]["percent"], args["max_memory_percent"])
    if args.get("max_swap_percent") is not None:
        above("swap", out["swap"]["percent"], args["max_swap_percent"])
    if args.get("max_load_per_cpu") is not None:
        window = args.get("load_window", 1)
        measured = out["load_per_cpu"][{1: 0, 5: 1, 15: 2}[window]]
        above(f"load per cpu ({window}m)", measured, args["max_load_per_cpu"], "")
    for path, wanted in (args.get("min_disk_free") or {}).items():
        disk = out["disks"][path]
        share = re.fullmatch(_SHARE, str(wanted))
        if share:
            allowed = float(str(wanted).strip().rstrip("%"))
            measured, text, allowed_text = disk["free_percent"], f"{disk['free_percent']:g}%", f"{allowed:g}%"
        else:
            allowed = parse_size(wanted)
            measured, text, allowed_text = disk["free"], format_size(disk["free"]), format_size(allowed)
        if measured < allowed:
            found.append(
                {
                    "metric": f"disk free on {path}",
                    "measured": measured,
                    "allowed": allowed,
                    "measured_text": text,
                    "allowed_text": f"< min {allowed_text}",
                }
            )
    return found
