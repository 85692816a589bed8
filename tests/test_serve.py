"""The ``serve`` handler: a real HTTP server for the rest of the run, stopped when the run ends.

Most tests run real ``runbook play`` processes whose later steps talk to the server. Whether
it is stopped at the end of a run is seen from the outside of a run that goes on living:
``play_file`` in this process, then a connect that must be refused.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from runner.play import play_file

from .playing import one_line_error, play

pytestmark = pytest.mark.usefixtures("marker")


def refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_served_folder_is_there_for_later_steps(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>report</h1>")
    run = play(
        tmp_path,
        """\
name: serves
steps:
  - id: site
    serve: site
  - id: page
    http: {url: "{{ steps.site.url }}index.html", body_contains: report}
  - id: missing
    http: {url: "{{ steps.site.url }}nope.html", expect_status: 404}
""",
    )
    assert run.returncode == 0, run.stderr
    site_result = run.step("site")["result"]
    assert site_result["url"] == f"http://127.0.0.1:{site_result['port']}/"
    assert run.step("page")["result"]["text"] == "<h1>report</h1>"
    assert run.step("missing")["result"]["status_code"] == 404


def test_a_fixed_answer_stands_in_for_a_webhook(tmp_path):
    run = play(
        tmp_path,
        """\
name: alerts
steps:
  - id: hook
    serve: {response: {status: 202, body: accepted}}
  - id: alert
    http: {url: "{{ steps.hook.url }}alert", method: POST, json: {text: disk full}, expect_status: 202}
""",
    )
    assert run.returncode == 0, run.stderr
    assert run.step("alert")["result"]["text"] == "accepted"


@pytest.mark.parametrize("ending", ["ok", "failed"])
def test_the_server_stops_when_the_run_ends(tmp_path, capsys, ending):
    book = tmp_path / "book.yml"
    command = "true" if ending == "ok" else "false"
    book.write_text(
        f"""\
name: stops
steps:
  - id: hook
    serve: {{}}
  - shell: "{command}"
finally:
  - shell: "echo port={{{{ steps.hook.port }}}}"
"""
    )
    code = play_file(str(book), output="plain", verbose=True, record=False)
    assert code == (0 if ending == "ok" else 1)
    out = capsys.readouterr().out
    port = int(re.search(r"port=(\d+)", out)[1])
    assert refused(port)


def test_refusals_are_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        run = play(
            tmp_path,
            f"""\
name: refusals
steps:
  - id: public
    serve: {{host: 0.0.0.0}}
    continue_on_error: true
  - id: busy
    serve: {{port: {busy}}}
    continue_on_error: true
  - id: nofolder
    serve: no-such-folder
    continue_on_error: true
""",
        )
    assert "allow_remote" in one_line_error(run.step("public"))
    assert f"127.0.0.1:{busy}" in one_line_error(run.step("busy"))
    assert "no such folder" in one_line_error(run.step("nofolder"))


def test_dry_run_listens_on_nothing(tmp_path: Path):
    run = play(tmp_path, "name: d\nsteps:\n  - id: s\n    serve: {port: 0}\n", "--dry-run")
    assert run.returncode == 0
    step = run.step("s")
    assert "would serve" in step["result"]["dry_run"] and "url" not in step["result"]
