"""The ``check_port`` handler (SPEC §5 row check_port, §8 "check_port ports:", issue 5).

Ports are real sockets of the test on 127.0.0.1 and ::1: listening ones (open), ones
bound and closed again (refused), and a listener whose accept queue is full, so the
kernel drops further connection attempts (a connect timeout without leaving loopback).
Playbooks run in real ``runbook play --output json`` processes. Only lower bounds on
time are asserted; poll counts have upper bounds, since polls are an interval apart.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.errors import HandlerError
from runner.taskctx import TaskContext
from tasks import check_port

from .playing import Play, one_line_error, play

pytestmark = pytest.mark.usefixtures("marker")


# -- helpers ------------------------------------------------------------------------------------


def book(steps: list[dict[str, Any]]) -> str:
    return json.dumps({"name": "check-port-tests", "steps": steps})


def run_steps(tmp_path: Path, steps: list[dict[str, Any]], *args: str) -> Play:
    return play(tmp_path, book(steps), *args)


@contextlib.contextmanager
def listening(host: str = "127.0.0.1", backlog: int = 1024) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        sock.listen(backlog)
        yield sock
    finally:
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was just free: bound, then closed, so nothing listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


# -- one port -------------------------------------------------------------------------------------


def test_an_open_port_is_open_and_a_closed_one_fails_with_a_one_line_error(tmp_path):
    closed = free_port()
    with listening() as server:
        port = server.getsockname()[1]
        run = run_steps(
            tmp_path,
            [
                {"id": "open", "check_port": {"port": port}},
                {"id": "by_name", "check_port": {"host": "localhost", "port": port}},
                {"id": "closed", "check_port": {"port": closed}, "continue_on_error": True},
                {"id": "want_closed", "check_port": {"port": closed, "state": "closed"}},
                {
                    "id": "open_but_want_closed",
                    "check_port": {"port": port, "state": "closed"},
                    "continue_on_error": True,
                },
            ],
        )
    assert run.returncode == 0, run.stderr
    opened = run.step("open")
    assert opened["status"] == "ok", opened
    result = opened["result"]
    assert result["open"] is True and result["address"] == "127.0.0.1"
    assert result["latency_ms"] >= 0 and result["changed"] is False
    assert "ports" not in result
    assert run.step("by_name")["result"]["open"] is True
    error = one_line_error(run.step("closed"))
    assert f"127.0.0.1:{closed}" in error and "connection refused" in error
    assert run.step("closed")["result"]["reason"] == "connection refused"
    want_closed = run.step("want_closed")
    assert want_closed["status"] == "ok" and want_closed["result"]["open"] is False
    error = one_line_error(run.step("open_but_want_closed"))
    assert "expected closed" in error and str(port) in error


def test_ipv6_loopback_works(tmp_path):
    if not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    closed = free_port("::1")
    with listening("::1") as server:
        port = server.getsockname()[1]
        run = run_steps(
            tmp_path,
            [
                {"id": "open", "check_port": {"host": "::1", "port": port}},
                {"id": "bracketed", "check_port": {"host": "[::1]", "ports": [port, port]}},
                {"id": "closed", "check_port": {"host": "::1", "port": closed}, "continue_on_error": True},
            ],
        )
    assert run.step("open")["result"]["open"] is True
    assert run.step("open")["result"]["address"] == "::1"
    assert [e["open"] for e in run.step("bracketed")["result"]["ports"]] == [True, True]
    error = one_line_error(run.step("closed"))
    assert f"[::1]:{closed}" in error and "connection refused" in error


def test_an_unknown_host_is_a_one_line_dns_error(tmp_path):
    run = run_steps(tmp_path, [{"id": "dns", "check_port": {"host": "no-such-host.invalid", "port": 80}}])
    assert run.returncode == 1
    error = one_line_error(run.step("dns"))
    assert "unknown host no-such-host.invalid" in error and "DNS" in error


def test_a_connect_that_gets_no_answer_times_out_after_timeout(tmp_path):
    # An accept queue of one, already taken: the kernel drops the next SYNs, so connects hang.
    with listening(backlog=0) as full, socket.create_connection(full.getsockname()):
        port = full.getsockname()[1]
        run = run_steps(
            tmp_path,
            [
                {"id": "silent", "check_port": {"port": port, "timeout": "300ms"}, "continue_on_error": True},
                {
                    "id": "silent_is_closed",
                    "check_port": {"port": port, "timeout": "300ms", "state": "closed"},
                },
            ],
        )
    step = run.step("silent")
    assert "timed out after 300ms" in one_line_error(step)
    assert step["duration"] >= 0.3
    assert run.step("silent_is_closed")["status"] == "ok"


# -- several ports ----------------------------------------------------------------------------------


def test_ports_probes_every_entry_duplicates_included_in_order(tmp_path):
    closed = free_port()
    with listening() as first, listening() as second:
        a, b = first.getsockname()[1], second.getsockname()[1]
        run = run_steps(
            tmp_path,
            [
                {"id": "all_open", "check_port": {"ports": [a, b, a, a]}},
                {
                    "id": "one_closed",
                    "check_port": {"ports": [a, closed, b, closed]},
                    "continue_on_error": True,
                },
                {"id": "all_closed", "check_port": {"ports": [closed, closed], "state": "closed"}},
            ],
        )
    all_open = run.step("all_open")["result"]
    assert all_open["open"] is True
    assert [(e["port"], e["open"]) for e in all_open["ports"]] == [(a, True), (b, True), (a, True), (a, True)]
    assert all(e["address"] == "127.0.0.1" and e["latency_ms"] >= 0 for e in all_open["ports"])
    one_closed = run.step("one_closed")
    error = one_line_error(one_closed)
    assert "2 of 4 ports" in error and f"{closed} (connection refused)" in error
    entries = one_closed["result"]["ports"]
    assert [e["open"] for e in entries] == [True, False, True, False]
    assert one_closed["result"]["open"] is False
    all_closed = run.step("all_closed")
    assert all_closed["status"] == "ok"
    assert [e["open"] for e in all_closed["result"]["ports"]] == [False, False]


def test_five_hundred_probes_of_one_port_are_all_answered(tmp_path):
    with listening(backlog=4096) as server:
        port = server.getsockname()[1]
        accepted = []
        stop = threading.Event()

        def accept() -> None:  # a real server accepts; the accept queue then never overflows
            server.settimeout(0.05)
            for _ in range(100_000):  # until stopped and the queue is empty
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    if stop.is_set():
                        return
                    continue
                accepted.append(1)
                conn.close()

        thread = threading.Thread(target=accept)
        thread.start()
        try:
            run = run_steps(tmp_path, [{"id": "many", "check_port": {"ports": [port] * 500}}])
        finally:
            stop.set()
            thread.join(5)
    result = run.step("many")["result"]
    assert run.step("many")["status"] == "ok", run.step("many").get("error")
    assert len(result["ports"]) == 500 and all(e["open"] for e in result["ports"])
    assert len(accepted) == 500, "every probe made its own connection"


# -- waiting ----------------------------------------------------------------------------------------


def on_flag(flag: Path, action: Any) -> threading.Thread:
    """A thread that runs ``action`` once ``flag`` exists (a sibling step creates it), or after 60 s."""

    def watch() -> None:
        for _ in range(1200):
            if flag.exists():
                break
            threading.Event().wait(0.05)
        action()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def flagged_group(check: dict[str, Any]) -> list[dict[str, Any]]:
    """The check beside a step that creates ``flag`` half a second after both start."""
    return [
        {
            "parallel": {
                "steps": [
                    {"id": "check", "check_port": check},
                    {"id": "flag", "shell": "sleep 0.5; touch flag"},
                ]
            }
        }
    ]


def test_wait_for_a_port_that_opens_later(tmp_path):
    port = free_port()
    opened: list[socket.socket] = []

    def open_now() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
        opened.append(sock)

    watcher = on_flag(tmp_path / "flag", open_now)
    try:
        run = run_steps(tmp_path, flagged_group({"port": port, "wait_for": "30s", "interval": "100ms"}))
    finally:
        (tmp_path / "flag").touch()
        watcher.join()
        for sock in opened:
            sock.close()
    step = run.step("check")
    assert step["status"] == "ok", step
    assert step["result"]["open"] is True
    assert step["result"]["polls"] >= 2, "the port was closed at the first check"
    assert step["result"]["waited"] >= 0.4


def test_wait_for_gives_up_after_the_time_with_the_last_reason(tmp_path):
    closed = free_port()
    run = run_steps(
        tmp_path,
        [{"id": "never", "check_port": {"port": closed, "wait_for": "600ms", "interval": "100ms"}}],
    )
    step = run.step("never")
    error = one_line_error(step)
    assert "still not open after 600ms" in error and "connection refused" in error
    assert 2 <= step["result"]["polls"] <= 0.6 / 0.1 + 2
    assert step["result"]["waited"] >= 0.6
    assert step["duration"] >= 0.6


def test_wait_for_closed_holds_once_the_listener_goes(tmp_path):
    with listening() as server:
        port = server.getsockname()[1]
        watcher = on_flag(tmp_path / "flag", server.close)
        try:
            check = {"port": port, "state": "closed", "wait_for": "30s", "interval": "100ms"}
            run = run_steps(tmp_path, flagged_group(check))
        finally:
            (tmp_path / "flag").touch()
            watcher.join()
    step = run.step("check")
    assert step["status"] == "ok", step
    assert step["result"]["polls"] >= 2 and step["result"]["open"] is False


def test_a_step_timeout_ends_a_long_wait(tmp_path):
    run = run_steps(
        tmp_path,
        [
            {
                "id": "cut",
                "check_port": {"port": free_port(), "wait_for": "1h", "interval": "100ms"},
                "timeout": "500ms",
            }
        ],
    )
    step = run.step("cut")
    assert "timed out" in one_line_error(step)
    assert step["duration"] >= 0.5


# -- dry run ----------------------------------------------------------------------------------------


def test_check_port_runs_under_dry_run(tmp_path):
    closed = free_port()
    with listening() as server:
        port = server.getsockname()[1]
        run = run_steps(
            tmp_path,
            [
                {"id": "open", "check_port": {"port": port}},
                {"id": "closed", "check_port": {"port": closed}, "continue_on_error": True},
            ],
            "--dry-run",
        )
    opened = run.step("open")
    assert opened["result"]["open"] is True and opened["result"]["latency_ms"] >= 0
    assert opened["result"]["verdict"] == "no change"
    assert "connection refused" in one_line_error(run.step("closed")), "the check really ran"


# -- unit level -------------------------------------------------------------------------------------


def test_cancelling_stops_the_polling(tmp_path):
    ctx = TaskContext(step_label="unit", cwd=str(tmp_path))
    threading.Timer(0.3, ctx.cancel_event.set).start()
    with pytest.raises(HandlerError, match="cancelled") as caught:
        check_port.run({"port": free_port(), "wait_for": "1h", "interval": "50ms"}, ctx)
    assert caught.value.result["polls"] >= 2
