"""Facts about the machine, for templates (``facts.os``, ``facts.cpu_count``...).

Gathered on first use and at most once per process: a run that never reads
``facts`` never pays for them.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Any


def gather_facts() -> dict[str, Any]:
    """Read the facts now; each is cheap (no subprocess, no network)."""
    try:
        os_release = {k.lower(): v for k, v in platform.freedesktop_os_release().items()}
    except (OSError, AttributeError):
        os_release = {}
    try:
        import psutil

        memory_total = psutil.virtual_memory().total
    except Exception:  # psutil missing or /proc unreadable: still a usable run
        memory_total = None
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else ""
    return {
        "os": platform.system().lower(),
        "os_release": os_release,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count() or 1,
        "memory_total": memory_total,
        "user": user,
        "cwd": os.getcwd(),
    }


class Facts(Mapping[str, Any]):
    """A mapping that gathers the facts the first time any of them is read."""

    _cache: dict[str, Any] | None = None

    def _facts(self) -> dict[str, Any]:
        if Facts._cache is None:
            Facts._cache = gather_facts()
        return Facts._cache

    def __getitem__(self, key: str) -> Any:
        return self._facts()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._facts())

    def __len__(self) -> int:
        return len(self._facts())
