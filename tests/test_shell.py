"""The ``shell`` handler (SPEC §5, §2 step keys, §6 output, §8 JSON events).

Almost every test writes a real playbook under ``tmp_path`` and runs it with a real
``runbook play --output json`` process; the JSON event lines are the contract read back.
A few unit-level tests call ``tasks.shell.run`` with a real ``TaskContext`` for what a
playbook cannot reach cheaply (a short kill grace, the cut of over-long lines).

Every test gets a unique marker in the environment of the processes it starts; after
each test no live process may carry it (runbook leaves no child behind), and any that
does is killed by pid. Zombies do not count: in this container PID 1 does not reap
orphans, so a killed orphan stays a zombie, which is not a running process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.errors import HandlerError
from runner.taskctx import TaskContext
from tasks import shell

from .playing import MARKER_VAR, Play, marked_processes, parse_events, play

# Every test gets a marker in its environment; no process carrying it may outlive the test.
pytestmark = pytest.mark.usefixtures("marker")

PY = json.dumps(sys.executable)  # the interpreter, quoted for YAML


# -- helpers ------------------------------------------------------------------------------------


def alive(pid: int, token: str) -> bool:
    """Whether ``pid`` is still one of this test's processes, running (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the pid now belongs to someone else's process
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.environ().get(MARKER_VAR) == token
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def gone_within(pid: int, token: str, seconds: float = 5.0) -> bool:
    """Poll (bounded in time and count) until ``pid`` no longer runs."""
    deadline = time.monotonic() + seconds
    for _ in range(1000):
        if not alive(pid, token):
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return not alive(pid, token)


def read_pid(path: Path) -> int:
    text = path.read_text().strip()
    assert text.isdigit(), f"{path} holds {text!r}"
    return int(text)


def wait_for_file(path: Path, seconds: float = 20.0, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + seconds
    for _ in range(2000):
        if path.exists() and path.read_text().strip():
            return
        if time.monotonic() >= deadline or (proc is not None and proc.poll() is not None):
            break
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear")


def ctx_for(tmp_path: Path, **kwargs: Any) -> tuple[TaskContext, list[tuple[str, str]]]:
    """A real TaskContext whose output lines are collected as (stream, line)."""
    lines: list[tuple[str, str]] = []
    ctx = TaskContext(
        step_label="unit",
        cwd=str(tmp_path),
        emit_output=lambda line, stream: lines.append((stream, line)),
        **kwargs,
    )
    return ctx, lines


# -- cmd, argv, executable ---------------------------------------------------------------------


def test_cmd_runs_through_sh_with_pipes_and_redirections(tmp_path):
    run = play(
        tmp_path,
        """\
name: pipes
steps:
  - id: sorted
    shell: >-
      printf 'pear\\napple\\nfig\\n' | sort | head -n 2 > sorted.txt;
      cat < sorted.txt; echo err 1>&2; (echo merged >&2) 2>&1 | tr a-z A-Z
""",
    )
    assert run.returncode == 0, run.stderr
    step = run.step("sorted")
    assert step["status"] == "changed"
    assert step["attempts"] == 1
    assert step["error"] is None
    result = step["result"]
    assert result["rc"] == 0
    assert result["stdout"] == "apple\nfig\nMERGED\n"
    assert result["stderr"] == "err\n"
    assert isinstance(result["pid"], int) and result["pid"] > 0
    assert result["cmd"].startswith("printf 'pear")
    assert (tmp_path / "sorted.txt").read_text() == "apple\nfig\n"
    assert run.finished()["status"] == "ok" and run.finished()["exit_code"] == 0


def test_argv_passes_every_argument_intact_without_a_shell(tmp_path):
    (tmp_path / "a-file-a-glob-would-find.txt").write_text("")
    arguments = ["two words", 'it\'s "quoted"', "$HOME", "*", "; touch injected", "back\\slash", "", 42]
    argv = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *arguments]
    run = play(
        tmp_path,
        f"""\
name: argv
steps:
  - id: args
    shell:
      argv: {json.dumps(argv)}
""",
    )
    assert run.returncode == 0, run.stderr
    result = run.step("args")["result"]
    assert json.loads(result["stdout"]) == [str(a) for a in arguments]
    assert not (tmp_path / "injected").exists()
    assert shlex.split(result["cmd"]) == [str(a) for a in argv]


def test_executable_runs_cmd_with_another_shell(tmp_path):
    if not os.access("/bin/bash", os.X_OK):
        pytest.skip("/bin/bash is not installed")
    bash_only = 'words=(one two three); [[ ${#words[@]} -eq 3 ]] && echo "arrays in bash ${BASH_VERSINFO[0]}"'
    run = play(
        tmp_path,
        f"""\
name: bash
steps:
  - id: bash
    shell: {{cmd: {json.dumps(bash_only)}, executable: /bin/bash}}
  - id: default_shell
    shell: {{cmd: 'echo "$0"'}}
""",
    )
    assert run.returncode == 0, run.stderr
    assert run.step("bash")["result"]["stdout"].startswith("arrays in bash ")
    assert run.step("default_shell")["result"]["stdout"] == "/bin/sh\n"


def test_without_executable_a_bash_only_construct_fails_under_sh(tmp_path):
    if os.path.basename(os.path.realpath("/bin/sh")) == "bash":
        pytest.skip("/bin/sh is bash here")
    run = play(
        tmp_path,
        """\
name: not-bash
steps:
  - id: sh
    shell: 'words=(one two); echo "${#words[@]}"'
""",
    )
    assert run.returncode == 1
    step = run.step("sh")
    assert step["status"] == "failed"
    assert step["result"]["rc"] != 0


def test_stdout_and_stderr_are_captured_and_streamed_separately(tmp_path):
    run = play(
        tmp_path,
        """\
name: streams
steps:
  - id: both
    shell: "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2"
""",
    )
    assert run.returncode == 0, run.stderr
    result = run.step("both")["result"]
    assert result["stdout"] == "out-1\nout-2\n"
    assert result["stderr"] == "err-1\nerr-2\n"
    assert run.lines("both", "stdout") == ["out-1", "out-2"]
    assert run.lines("both", "stderr") == ["err-1", "err-2"]


# -- cwd -----------------------------------------------------------------------------------------


def test_cwd_is_relative_to_where_runbook_runs_not_to_the_playbook(tmp_path):
    where = tmp_path / "where-runbook-runs"
    (where / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "absolute").mkdir()
    run = play(
        tmp_path,
        f"""\
name: cwd
steps:
  - id: relative
    shell: {{cmd: pwd -P, cwd: sub}}
  - id: default
    shell: pwd -P
  - id: absolute
    shell: {{cmd: pwd -P, cwd: {json.dumps(str(tmp_path / "absolute"))}}}
  - id: written
    shell: {{cmd: "echo here > made-in-sub.txt", cwd: sub}}
""",
        name="elsewhere/play.yml",
        cwd=where,
    )
    assert run.returncode == 0, run.stderr
    assert run.step("relative")["result"]["stdout"].strip() == os.path.realpath(where / "sub")
    assert run.step("default")["result"]["stdout"].strip() == os.path.realpath(where)
    assert run.step("absolute")["result"]["stdout"].strip() == os.path.realpath(tmp_path / "absolute")
    assert (where / "sub" / "made-in-sub.txt").read_text() == "here\n"


def test_missing_cwd_fails_the_step_with_a_one_line_error(tmp_path):
    run = play(
        tmp_path,
        """\
name: no-cwd
steps:
  - id: lost
    shell: {cmd: "echo should-not-run > ran.txt", cwd: no-such-folder}
  - id: after
    shell: "echo after > after.txt"
""",
    )
    assert run.returncode == 1
    assert run.finished()["status"] == "failed" and run.finished()["exit_code"] == 1
    step = run.step("lost")
    assert step["status"] == "failed"
    error = step["error"]
    assert "\n" not in error.strip()
    assert "no-such-folder" in error
    assert "not exist" in error or "no such" in error.lower()
    assert not (tmp_path / "ran.txt").exists()
    assert not (tmp_path / "after.txt").exists(), "the first failure stops a plain step list"


# -- env -----------------------------------------------------------------------------------------


DUMP_ENV = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


def test_env_from_playbook_step_and_argument_all_reach_the_process(tmp_path):
    run = play(
        tmp_path,
        f"""\
name: env
vars:
  greeting: hello
env:
  PLAYBOOK_VAR: from-playbook
  OVERRIDDEN: by-playbook
steps:
  - id: dump
    env:
      STEP_VAR: "{{{{ greeting }}}}-step"
      OVERRIDDEN: by-step
      STEP_ON: true
      STEP_OFF: false
    shell:
      argv: {json.dumps(DUMP_ENV)}
      env:
        ARG_VAR: "{{{{ greeting }}}}-arg"
        ARG_ON: true
        ARG_OFF: false
        ARG_NUMBER: 7
""",
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.step("dump")["result"]["stdout"])
    assert seen["PLAYBOOK_VAR"] == "from-playbook"
    assert seen["OVERRIDDEN"] == "by-step", "a step's env wins over the playbook's"
    assert seen["STEP_VAR"] == "hello-step"
    assert seen["ARG_VAR"] == "hello-arg"
    assert (seen["STEP_ON"], seen["STEP_OFF"]) == ("true", "false")
    assert (seen["ARG_ON"], seen["ARG_OFF"]) == ("true", "false")
    assert seen["ARG_NUMBER"] == "7"
    assert seen[MARKER_VAR] == os.environ[MARKER_VAR], "runbook's own environment is passed on"
    assert "PATH" in seen


def test_playbook_env_booleans_become_true_and_false(tmp_path):
    run = play(
        tmp_path,
        f"""\
name: env-bool
env: {{PLAYBOOK_ON: true, PLAYBOOK_OFF: false}}
steps:
  - id: dump
    shell: {{argv: {json.dumps(DUMP_ENV)}}}
""",
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.step("dump")["result"]["stdout"])
    assert (seen["PLAYBOOK_ON"], seen["PLAYBOOK_OFF"]) == ("true", "false")


def test_playbook_env_templates_are_rendered(tmp_path):
    run = play(
        tmp_path,
        f"""\
name: env-template
vars: {{region: eu-west-1}}
env: {{AWS_REGION: "{{{{ region }}}}"}}
steps:
  - id: dump
    shell: {{argv: {json.dumps(DUMP_ENV)}}}
""",
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.step("dump")["result"]["stdout"])["AWS_REGION"] == "eu-west-1"


# -- stdin ---------------------------------------------------------------------------------------


def test_stdin_is_written_to_the_command(tmp_path):
    run = play(
        tmp_path,
        """\
name: stdin
steps:
  - id: upper
    shell: {cmd: "tr a-z A-Z", stdin: "hello\\nworld\\n"}
  - id: big
    shell: {cmd: "wc -c", stdin: "{{ 'x' * 3000000 }}"}
  - id: unread
    shell: {cmd: "true", stdin: "{{ 'y' * 3000000 }}"}
""",
    )
    assert run.returncode == 0, run.stderr
    assert run.step("upper")["result"]["stdout"] == "HELLO\nWORLD\n"
    assert run.step("big")["result"]["stdout"].strip() == "3000000", "a large stdin does not deadlock"
    assert run.step("unread")["status"] == "changed", "a command that does not read its stdin is fine"


def test_without_stdin_the_command_does_not_inherit_runbooks_stdin(tmp_path):
    read_end, write_end = os.pipe()  # a stdin that never ends while we hold the write end
    try:
        run = play(
            tmp_path,
            """\
name: no-stdin
steps:
  - id: cat
    shell: cat
    timeout: 20s
""",
            stdin=read_end,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert run.returncode == 0, run.stderr
    step = run.step("cat")
    assert step["status"] == "changed"
    assert step["result"]["stdout"] == ""


# -- expect_rc -----------------------------------------------------------------------------------


def test_expect_rc_as_int_and_list_and_failures_keep_the_output(tmp_path):
    run = play(
        tmp_path,
        """\
name: rc
steps:
  - id: int_match
    shell: {cmd: "exit 3", expect_rc: 3}
  - id: list_match
    shell: {cmd: "exit 3", expect_rc: [0, 3]}
  - id: default_mismatch
    shell: "echo to-out; echo to-err >&2; exit 4"
    continue_on_error: true
  - id: list_mismatch
    shell: {cmd: "echo fine", expect_rc: [1, 2]}
    continue_on_error: true
  - id: int_mismatch
    shell: {cmd: "exit 5", expect_rc: 6}
    continue_on_error: true
  - id: killed
    shell: "kill -9 $$"
    continue_on_error: true
""",
    )
    assert run.returncode == 0, run.stderr  # every failure is under continue_on_error
    for ok in ("int_match", "list_match"):
        step = run.step(ok)
        assert step["status"] == "changed", step
        assert step["result"]["rc"] == 3

    step = run.step("default_mismatch")
    assert step["status"] == "failed"
    assert step["result"]["ignored"] is True
    assert "4" in step["error"] and "\n" not in step["error"]
    assert step["result"]["rc"] == 4
    assert step["result"]["stdout"] == "to-out\n"
    assert step["result"]["stderr"] == "to-err\n"

    step = run.step("list_mismatch")
    assert step["status"] == "failed"
    assert step["result"]["rc"] == 0
    assert "0" in step["error"] and "1" in step["error"] and "2" in step["error"]
    assert step["result"]["stdout"] == "fine\n"

    step = run.step("int_mismatch")
    assert step["status"] == "failed"
    assert "5" in step["error"] and "6" in step["error"]

    step = run.step("killed")
    assert step["status"] == "failed"
    assert step["result"]["rc"] == -signal.SIGKILL
    assert "signal 9" in step["error"]


# -- creates / removes ---------------------------------------------------------------------------


def test_creates_and_removes_skip_the_step(tmp_path):
    (tmp_path / "existing.txt").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.txt").write_text("")
    run = play(
        tmp_path,
        """\
name: guards
steps:
  - id: creates_exists
    shell: {cmd: "touch ran-1", creates: existing.txt}
  - id: creates_missing
    shell: {cmd: "touch ran-2", creates: missing.txt}
  - id: creates_list
    shell: {cmd: "touch ran-3", creates: [missing.txt, existing.txt]}
  - id: removes_missing
    shell: {cmd: "touch ran-4", removes: missing.txt}
  - id: removes_exists
    shell: {cmd: "touch ran-5", removes: existing.txt}
  - id: creates_in_cwd
    shell: {cmd: "touch ran-6", cwd: sub, creates: inner.txt}
  - id: make
    shell: "touch made-at-run-time.txt"
  - id: creates_made_earlier
    shell: {cmd: "touch ran-7", creates: made-at-run-time.txt}
""",
    )
    assert run.returncode == 0, run.stderr
    assert run.finished()["status"] == "ok"
    skipped = {
        "creates_exists": ("ran-1", "existing.txt"),
        "creates_list": ("ran-3", "existing.txt"),
        "removes_missing": ("ran-4", "missing.txt"),
        "creates_in_cwd": ("sub/ran-6", "inner.txt"),
        "creates_made_earlier": ("ran-7", "made-at-run-time.txt"),
    }
    for step_id, (marker_file, path) in skipped.items():
        step = run.step(step_id)
        assert step["status"] == "skipped", step
        assert step["result"]["skipped"] is True
        assert path in step["result"]["skip_reason"]
        assert not (tmp_path / marker_file).exists(), step_id
        assert "rc" not in step["result"], "a skipped command does not run"
    assert "creates" in run.step("creates_exists")["result"]["skip_reason"]
    assert "removes" in run.step("removes_missing")["result"]["skip_reason"]
    for step_id, marker_file in (("creates_missing", "ran-2"), ("removes_exists", "ran-5")):
        assert run.step(step_id)["status"] == "changed"
        assert (tmp_path / marker_file).exists()


# -- output --------------------------------------------------------------------------------------


def test_output_over_the_cap_keeps_the_tail_and_says_it_was_cut(tmp_path):
    lines = 3100  # 3100 lines of 1000 digits: about 3 MiB on each stream
    run = play(
        tmp_path,
        f"""\
name: big
steps:
  - id: big
    shell: >-
      seq -f '%01000g' 1 {lines}; echo END-OF-STDOUT;
      seq -f '%01000g' 1 {lines} >&2; echo END-OF-STDERR >&2
  - id: small
    shell: "echo small"
""",
    )
    assert run.returncode == 0, run.stderr
    result = run.step("big")["result"]
    cap = 1024 * 1024
    last = f"{lines:01000d}"
    for stream, end in (("stdout", "END-OF-STDOUT"), ("stderr", "END-OF-STDERR")):
        assert result[f"{stream}_truncated"] is True
        text = result[stream]
        head, body = text.split("\n", 1)
        assert "cut" in head.lower(), head[:200]
        assert not head.startswith("0000"), "the note comes first, not a data line"
        assert text.endswith(f"{last}\n{end}\n"), "the tail, with the last line, is kept"
        assert cap - 1100 <= len(body.encode()) <= cap, len(body.encode())
        assert f"{1:01000d}" not in text, "the head was dropped"
        streamed = run.lines("big", stream)
        assert len(streamed) == lines + 1, "every line is streamed, whatever the capture keeps"
        assert streamed[-1] == end
        assert streamed[0] == f"{1:01000d}"
    small = run.step("small")["result"]
    assert small["stdout"] == "small\n"
    assert not small.get("stdout_truncated")
    assert not small.get("stderr_truncated")


def test_a_line_written_in_pieces_is_one_output_event(tmp_path):
    run = play(
        tmp_path,
        """\
name: pieces
steps:
  - id: slow
    shell: >-
      printf 'alpha-'; printf 'err-' >&2; sleep 0.3; printf 'beta-'; sleep 0.3;
      printf 'gamma\\n'; printf 'line\\n' >&2; printf 'no-newline-at-end'
""",
    )
    assert run.returncode == 0, run.stderr
    assert run.lines("slow", "stdout") == ["alpha-beta-gamma", "no-newline-at-end"]
    assert run.lines("slow", "stderr") == ["err-line"]
    assert run.step("slow")["result"]["stdout"] == "alpha-beta-gamma\nno-newline-at-end"


def test_parallel_steps_output_never_interleaves_mid_event(tmp_path):
    run = play(
        tmp_path,
        """\
name: chatty
steps:
  - parallel:
      steps:
        - id: left
          shell: "seq 1 3000"
        - id: right
          shell: "seq 1 3000 | sed 's/^/right-/'"
""",
    )
    assert run.returncode == 0, run.stderr  # play() already parsed every stdout line as one event
    assert run.lines("left") == [str(i) for i in range(1, 3001)]
    assert run.lines("right") == [f"right-{i}" for i in range(1, 3001)]


def test_non_utf8_output_does_not_crash(tmp_path):
    run = play(
        tmp_path,
        """\
name: bytes
steps:
  - id: raw
    shell: >-
      printf 'ok \\377\\376 end\\n'; printf 'bad \\377\\n' >&2; printf '\\303'
""",
    )
    assert run.returncode == 0, run.stderr
    step = run.step("raw")
    assert step["status"] == "changed"
    stdout = step["result"]["stdout"]
    assert stdout.startswith("ok ") and " end\n" in stdout and "\ufffd" in stdout
    assert step["result"]["stderr"].startswith("bad ")
    assert run.lines("raw")[0].startswith("ok ") and run.lines("raw")[0].endswith(" end")
    assert run.lines("raw", "stderr") == ["bad \ufffd"]


def test_command_not_found_fails_with_a_one_line_error(tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    run = play(
        tmp_path,
        f"""\
name: missing
steps:
  - id: argv
    shell: {{argv: [definitely-not-a-command-xyz, --flag]}}
    continue_on_error: true
  - id: not_executable
    shell: {{argv: [{json.dumps(str(script))}]}}
    continue_on_error: true
  - id: executable
    shell: {{cmd: "echo hi", executable: /no/such/shell}}
    continue_on_error: true
  - id: through_sh
    shell: "definitely-not-a-command-xyz"
    continue_on_error: true
""",
    )
    assert run.returncode == 0, run.stderr
    step = run.step("argv")
    assert step["status"] == "failed"
    assert "\n" not in step["error"].strip()
    assert "definitely-not-a-command-xyz" in step["error"] and "not found" in step["error"]

    step = run.step("not_executable")
    assert step["status"] == "failed"
    assert "\n" not in step["error"].strip()
    assert "permission denied" in step["error"].lower()

    step = run.step("executable")
    assert step["status"] == "failed"
    assert "/no/such/shell" in step["error"] and "\n" not in step["error"].strip()

    step = run.step("through_sh")
    assert step["status"] == "failed"
    assert step["result"]["rc"] == 127
    assert "127" in step["error"]
    assert "not found" in step["result"]["stderr"]
    assert "Traceback" not in run.stdout


# -- timeout and cancellation --------------------------------------------------------------------


def test_timeout_kills_the_whole_process_group(tmp_path, marker):
    run = play(
        tmp_path,
        f"""\
name: timeout
steps:
  - id: slow
    shell: ": {marker}; echo started; sleep 1000 & echo $! > bg.pid; wait"
    timeout: 1s
""",
    )
    assert run.returncode == 1
    assert run.finished()["status"] == "failed"
    step = run.step("slow")
    assert step["status"] == "failed"
    assert "timed out" in step["error"]
    assert step["result"]["timed_out"] is True
    assert step["result"]["stdout"] == "started\n", "output before the timeout is kept"
    assert step["result"]["rc"] == -signal.SIGTERM
    assert step["duration"] >= 1.0
    background = read_pid(tmp_path / "bg.pid")
    assert gone_within(background, marker), f"background sleep {background} survived the timeout"
    assert not marked_processes(marker)


def test_timeout_sigkills_a_command_that_ignores_sigterm_after_the_grace(tmp_path, marker):
    run = play(
        tmp_path,
        f"""\
name: stubborn
steps:
  - id: stubborn
    shell: "trap '' TERM; : {marker}; sleep 1000 & echo $! > bg.pid; wait"
    timeout: 1s
""",
    )
    assert run.returncode == 1
    step = run.step("stubborn")
    assert step["status"] == "failed"
    assert "timed out" in step["error"]
    assert step["result"]["rc"] == -signal.SIGKILL, "SIGTERM was ignored, so SIGKILL ended it"
    assert step["duration"] >= 1.0 + 4.5, "SIGKILL comes only after the grace period (5s)"
    background = read_pid(tmp_path / "bg.pid")
    assert gone_within(background, marker), f"background sleep {background} survived SIGKILL"
    assert not marked_processes(marker)


def test_sigterm_to_runbook_cancels_the_step_and_kills_its_group(tmp_path, marker):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        f"""\
name: cancel
steps:
  - id: slow
    shell: ": {marker}; sleep 1000 & echo $! > bg.pid; wait"
  - id: never
    shell: "touch never-ran"
finally:
  - id: cleanup
    shell: "touch finally-ran"
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "play", str(playbook), "--output", "json"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(tmp_path / "bg.pid", proc=proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr
    run = Play(proc.returncode, stdout, stderr, parse_events(stdout))
    assert run.finished()["status"] == "cancelled" and run.finished()["exit_code"] == 143
    assert run.step("slow")["status"] == "cancelled"
    assert not (tmp_path / "never-ran").exists()
    assert (tmp_path / "finally-ran").exists()
    background = read_pid(tmp_path / "bg.pid")
    assert gone_within(background, marker), f"background sleep {background} survived the cancel"
    assert not marked_processes(marker)


# -- dry run -------------------------------------------------------------------------------------


def test_dry_run_shows_the_rendered_command_and_runs_nothing_unless_dry_run_run(tmp_path):
    run = play(
        tmp_path,
        """\
name: dry
vars: {target: made-by-dry-run.txt}
steps:
  - id: would
    shell: "touch {{ target }}"
  - id: would_argv
    shell: {argv: [touch, "{{ target }} too"]}
  - id: really
    shell: "touch really-ran.txt"
    dry_run: run
""",
        "--dry-run",
    )
    assert run.returncode == 0, run.stderr
    assert run.events[0]["event"] == "run_started" and run.events[0]["dry_run"] is True
    step = run.step("would")
    assert step["status"] != "failed"
    assert "touch made-by-dry-run.txt" in step["result"]["dry_run"]
    assert "rc" not in step["result"]
    assert "touch 'made-by-dry-run.txt too'" in run.step("would_argv")["result"]["dry_run"]
    assert not (tmp_path / "made-by-dry-run.txt").exists()
    assert not (tmp_path / "made-by-dry-run.txt too").exists()
    assert run.step("really")["result"]["rc"] == 0
    assert (tmp_path / "really-ran.txt").exists()


# -- unit level: tasks.shell.run with a real TaskContext -----------------------------------------


def test_unit_run_returns_the_result_and_streams_lines(tmp_path):
    ctx, lines = ctx_for(tmp_path, env={"FROM_CTX": "ctx"})
    result = shell.run({"cmd": 'echo "$FROM_CTX $FROM_ARG"; echo oops >&2', "env": {"FROM_ARG": "arg"}}, ctx)
    assert result["rc"] == 0
    assert result["stdout"] == "ctx arg\n"
    assert result["stderr"] == "oops\n"
    assert result["changed"] is True
    assert [line for stream, line in lines if stream == "stdout"] == ["ctx arg"]
    assert [line for stream, line in lines if stream == "stderr"] == ["oops"]


def test_unit_dry_run_does_not_run(tmp_path):
    ctx, _ = ctx_for(tmp_path, dry_run=True)
    result = shell.run({"cmd": "touch dry.txt"}, ctx)
    assert "touch dry.txt" in result["dry_run"]
    assert not (tmp_path / "dry.txt").exists()


def test_unit_missing_cwd_raises_a_one_line_handler_error(tmp_path):
    ctx, _ = ctx_for(tmp_path)
    with pytest.raises(HandlerError) as caught:
        shell.run({"cmd": "true", "cwd": "nowhere"}, ctx)
    assert "nowhere" in str(caught.value) and "\n" not in str(caught.value)


def test_unit_cancel_stops_the_group_sigterm_then_sigkill_after_the_grace(tmp_path, marker):
    ctx, _ = ctx_for(tmp_path, kill_grace=0.5)
    timer = threading.Timer(1.0, ctx.cancel_event.set)
    timer.start()
    try:
        begin = time.monotonic()
        with pytest.raises(HandlerError) as caught:
            shell.run({"cmd": f"trap '' TERM; : {marker}; sleep 1000 & echo $! > bg.pid; wait"}, ctx)
        elapsed = time.monotonic() - begin
    finally:
        timer.cancel()
        timer.join()
    assert "stopped" in str(caught.value)
    assert caught.value.result["rc"] == -signal.SIGKILL
    assert elapsed >= 1.0 + 0.5
    background = read_pid(tmp_path / "bg.pid")
    assert gone_within(background, marker)


def test_unit_an_over_long_line_is_emitted_in_pieces_that_join_to_the_line(tmp_path):
    ctx, lines = ctx_for(tmp_path)
    size = 3 * shell.LONGEST_LINE + 123
    shell.run({"cmd": f"head -c {size} /dev/zero | tr '\\0' a; echo; echo next"}, ctx)
    out = [line for stream, line in lines if stream == "stdout"]
    assert out[-1] == "next"
    pieces = out[:-1]
    assert len(pieces) > 1
    assert all(len(p.encode()) <= 2 * shell.LONGEST_LINE for p in pieces), "memory per piece is bounded"
    assert "".join(pieces) == "a" * size


def test_unit_over_long_line_pieces_keep_multibyte_characters_whole(tmp_path):
    ctx, lines = ctx_for(tmp_path)
    count = shell.LONGEST_LINE  # 3 bytes each: the cuts cannot all fall between characters
    (tmp_path / "euros.txt").write_text("€" * count + "\n")
    shell.run({"cmd": "cat euros.txt"}, ctx)
    pieces = [line for stream, line in lines if stream == "stdout"]
    assert len(pieces) > 1
    assert "".join(pieces) == "€" * count
