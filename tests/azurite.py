"""A real Azure Blob Storage emulator for the tests: Azurite (the npm package ``azurite``).

``Azurite`` starts ``azurite-blob`` on 127.0.0.1 with a free port and a temporary folder,
with telemetry off (Azurite otherwise reports to a host beyond loopback), waits until it
accepts connections, and stops it (its whole process group) in ``stop()``. Its account
is the emulator's documented development account, whose key is public.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

import pytest

ACCOUNT = "devstoreaccount1"
# Azurite's published development key (in its README); not a secret.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Azurite:
    """``azurite-blob`` running at ``account_url``; ``connection_string`` reaches it."""

    def __init__(self) -> None:
        program = shutil.which("azurite-blob")
        if program is None:
            missing = "azurite-blob is not installed (npm install -g azurite; .ci/run does it)"
            if os.environ.get("CI"):  # CI installs it: its absence there is a failure, not a skip
                pytest.fail(missing)
            pytest.skip(missing)
        self.folder = tempfile.mkdtemp(prefix="azurite-")
        self.port = free_port()
        self.account_url = f"http://127.0.0.1:{self.port}/{ACCOUNT}"
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.account_url};"
        )
        self.log = open(os.path.join(self.folder, "azurite.log"), "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                program,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                self.folder,
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_ready(30)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"azurite-blob exited with {self.process.returncode}: {self._log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"azurite-blob did not listen within {seconds} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        with open(os.path.join(self.folder, "azurite.log"), "rb") as handle:
            return handle.read()[-2000:].decode(errors="replace")

    def client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
