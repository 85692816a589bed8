"""The ``http`` handler (SPEC §5 row http, issue 5), against a real local server.

Every server is a real threaded ``http.server`` on 127.0.0.1 (``tests/httpservers.py``)
that records each request it receives; playbooks run in real ``runbook play --output json``
processes. TLS uses a private CA and a server certificate made in the test with
``cryptography``. Faults are real: a refused port, a listener whose accept queue is full
(connect timeout), a route that holds its answer (read timeout, step timeout), a server
that closes the connection in the middle of a body. Only lower bounds on time are asserted.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.errors import HandlerError
from runner.taskctx import TaskContext
from tasks import http
from tasks._http_redact import Scrubber, redact_headers, redact_url

from .conftest import REPO
from .httpservers import Reply, Seen, Server, json_reply, make_certificates, serving
from .playing import Play, one_line_error, play

pytestmark = pytest.mark.usefixtures("marker")

TOKEN = "tok-3f9a1c77e2b84d5f"  # a secret no output may show
PASSWORD = "pw-b81d2e6a94c7"


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Server]:
    with serving() as running:
        yield running


def book(steps: list[dict[str, Any]], **extra: Any) -> str:
    """A playbook as JSON text (JSON is YAML), so URLs and bodies need no YAML quoting."""
    return json.dumps({"name": "http-tests", **extra, "steps": steps})


def run_steps(tmp_path: Path, steps: list[dict[str, Any]], *args: str, **extra: Any) -> Play:
    return play(tmp_path, book(steps, **extra), *args)


def leftovers(folder: Path) -> list[str]:
    """Temporary files a download could leave beside its destination."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- answers ------------------------------------------------------------------------------------


def test_a_json_answer_gives_status_headers_json_text_and_final_url(tmp_path, server):
    server.route("/api/health", json_reply({"status": "ok", "checks": [1, 2]}))
    run = run_steps(tmp_path, [{"id": "health", "http": server.url("/api/health")}])
    assert run.returncode == 0, run.stderr
    step = run.step("health")
    assert step["status"] == "ok", step  # a GET changes nothing
    result = step["result"]
    assert result["status_code"] == 200
    assert result["json"] == {"status": "ok", "checks": [1, 2]}
    assert json.loads(result["text"]) == result["json"]
    assert result["text_truncated"] is False
    assert result["bytes"] == len(result["text"])
    assert result["headers"]["Content-Type"] == "application/json"
    assert result["url"] == server.url("/api/health")
    assert result["elapsed"] >= 0 and result["redirects"] == 0
    assert result["changed"] is False
    (seen,) = server.requests("/api/health")
    assert seen.method == "GET"
    assert seen.header("User-Agent").startswith("runbook")


def test_a_text_answer_has_no_json_and_a_long_body_is_truncated_in_text(tmp_path, server):
    big = "".join(f"line {i:06d}\n" for i in range(12_000))  # 144,000 bytes
    server.route("/big", Reply(200, big, {"Content-Type": "text/plain; charset=utf-8"}))
    server.route("/notjson", Reply(200, "{not json", {"Content-Type": "application/json"}))
    run = run_steps(
        tmp_path,
        [
            {"id": "big", "http": {"url": server.url("/big"), "body_contains": "line 011999"}},
            {"id": "notjson", "http": server.url("/notjson")},
            {"id": "head", "http": {"url": server.url("/big"), "method": "HEAD"}},
        ],
    )
    assert run.returncode == 0, run.stderr
    result = run.step("big")["result"]
    assert result["text_truncated"] is True
    assert big.startswith(result["text"]) and 0 < len(result["text"]) < len(big)
    assert result["bytes"] == len(big.encode())
    assert "json" not in result
    notjson = run.step("notjson")["result"]
    assert "json" not in notjson and notjson["text"] == "{not json"
    head = run.step("head")["result"]
    assert head["status_code"] == 200 and head["text"] == "" and head["bytes"] == 0
    assert server.requests("/big")[-1].method == "HEAD"


def test_expect_status_as_number_list_and_class(tmp_path, server):
    server.route("/created", Reply(201, "made"))
    server.route("/missing", Reply(404, "nothing here"))
    server.route("/moved", Reply(301, "", {"Location": "/created"}))
    run = run_steps(
        tmp_path,
        [
            {"id": "number", "http": {"url": server.url("/created"), "expect_status": 201}},
            {"id": "list", "http": {"url": server.url("/missing"), "expect_status": [200, 404]}},
            {"id": "klass", "http": {"url": server.url("/missing"), "expect_status": "4xx"}},
            {"id": "string_code", "http": {"url": server.url("/missing"), "expect_status": "404"}},
            {
                "id": "redirect_class",
                "http": {"url": server.url("/moved"), "expect_status": "3xx", "follow_redirects": False},
            },
        ],
    )
    assert run.returncode == 0, run.stderr
    for step_id in ("number", "list", "klass", "string_code", "redirect_class"):
        assert run.step(step_id)["status"] == "ok", run.step(step_id)
    assert run.step("list")["result"]["status_code"] == 404
    assert run.step("redirect_class")["result"]["headers"]["Location"] == "/created"


def test_an_unexpected_status_fails_with_the_status_and_the_start_of_the_body(tmp_path, server):
    body = "Not found:\n  " + "".join(f"{i % 10}" for i in range(2000)) + "\nEND-OF-BODY"
    server.route("/missing", Reply(404, body, {"Content-Type": "text/plain"}))
    run = run_steps(
        tmp_path,
        [
            {"id": "missing", "http": server.url("/missing"), "continue_on_error": True},
            {"id": "wrong", "http": {"url": server.url("/missing"), "expect_status": [200, 201]}},
        ],
    )
    assert run.returncode == 1
    error = one_line_error(run.step("missing"))
    assert "404" in error and "2xx" in error
    assert server.url("/missing") in error
    assert "Not found: 0123456789" in error, "the body's start is shown, newlines folded"
    shown = error.split("body: ", 1)[1]
    assert len(shown) <= 510 and "END-OF-BODY" not in shown
    assert run.step("missing")["result"]["status_code"] == 404
    assert "200 or 201" in one_line_error(run.step("wrong"))


def test_body_contains_text_and_regex(tmp_path, server):
    server.route("/health", json_reply({"status": "ok", "version": "2.14.3"}))
    url = server.url("/health")
    run = run_steps(
        tmp_path,
        [
            {"id": "text", "http": {"url": url, "body_contains": '"status": "ok"'}},
            {"id": "regex", "http": {"url": url, "body_contains": {"regex": r'"version": "2\.\d+\.\d+"'}}},
            {
                "id": "text_missing",
                "http": {"url": url, "body_contains": "degraded"},
                "continue_on_error": True,
            },
            {
                "id": "regex_missing",
                "http": {"url": url, "body_contains": {"regex": r"version.: .3\."}},
                "continue_on_error": True,
            },
            {"id": "literal_dots", "http": {"url": url, "body_contains": "2x14"}, "continue_on_error": True},
        ],
    )
    assert run.step("text")["status"] == "ok"
    assert run.step("regex")["status"] == "ok"
    error = one_line_error(run.step("text_missing"))
    assert "'degraded'" in error and "status 200" in error and '"status": "ok"' in error
    assert "regex" in one_line_error(run.step("regex_missing"))
    # Plain text is matched literally: "2x14" is no regex matching "2.14".
    assert run.step("literal_dots")["status"] == "failed"


def test_an_invalid_regex_is_a_one_line_error(tmp_path, server):
    server.route("/x", Reply(200, "x"))
    run = run_steps(
        tmp_path, [{"id": "bad", "http": {"url": server.url("/x"), "body_contains": {"regex": "(unclosed"}}}]
    )
    error = one_line_error(run.step("bad"))
    assert "body_contains.regex" in error
    assert server.requests("/x") == [], "nothing is sent with a broken check"


# -- requests as sent ---------------------------------------------------------------------------


def test_method_headers_params_and_bodies_arrive_as_given(tmp_path, server):
    server.route("/echo", Reply(200, "ok"))
    url = server.url("/echo")
    run = run_steps(
        tmp_path,
        [
            {
                "id": "json_post",
                "http": {
                    "url": url,
                    "method": "POST",
                    "json": {"text": "déployé", "n": 3, "tags": ["a", "b"]},
                    "headers": {"X-Request-Id": "abc-123", "X-Number": 7},
                    "params": {"dry": True, "page": 2, "multi": ["x", "y"]},
                },
            },
            {"id": "form_put", "http": {"url": url, "method": "PUT", "data": {"name": "app", "replicas": 3}}},
            {
                "id": "raw_patch",
                "http": {
                    "url": url,
                    "method": "PATCH",
                    "data": "line one\nligne deux é",
                    "headers": {"Content-Type": "text/plain; charset=utf-8"},
                },
            },
            {"id": "delete", "http": {"url": url + "?id=9", "method": "DELETE"}},
        ],
    )
    assert run.returncode == 0, run.stderr
    posted, put, patched, deleted = server.requests("/echo")
    assert posted.method == "POST"
    assert posted.json() == {"text": "déployé", "n": 3, "tags": ["a", "b"]}
    assert posted.header("Content-Type") == "application/json"
    assert posted.header("X-Request-Id") == "abc-123" and posted.header("X-Number") == "7"
    assert posted.query == {"dry": ["true"], "page": ["2"], "multi": ["x", "y"]}
    assert put.method == "PUT" and put.body == b"name=app&replicas=3"
    assert put.header("Content-Type") == "application/x-www-form-urlencoded"
    assert patched.method == "PATCH" and patched.body == "line one\nligne deux é".encode()
    assert deleted.method == "DELETE" and deleted.query == {"id": ["9"]}
    # Methods that change things report a change; the step's verdict follows.
    for step_id in ("json_post", "form_put", "raw_patch", "delete"):
        assert run.step(step_id)["status"] == "changed"


def test_redirects_are_followed_or_not(tmp_path, server):
    server.route("/old", Reply(302, "", {"Location": "/hop"}))
    server.route("/hop", Reply(301, "", {"Location": server.url("/new?x=1")}))
    server.route("/new", Reply(200, "arrived"))
    server.route("/loop", Reply(302, "", {"Location": "/loop"}))
    run = run_steps(
        tmp_path,
        [
            {"id": "follow", "http": server.url("/old")},
            {
                "id": "stay",
                "http": {"url": server.url("/old"), "follow_redirects": False},
                "continue_on_error": True,
            },
            {"id": "loop", "http": server.url("/loop"), "continue_on_error": True},
        ],
    )
    follow = run.step("follow")["result"]
    assert follow["status_code"] == 200 and follow["text"] == "arrived"
    assert follow["url"] == server.url("/new?x=1") and follow["redirects"] == 2
    stay = run.step("stay")
    assert "302" in one_line_error(stay) and stay["result"]["headers"]["Location"] == "/hop"
    assert "redirect" in one_line_error(run.step("loop"))
    assert len(server.requests("/loop")) > 5


def test_basic_and_bearer_auth_reach_the_server_and_never_print(tmp_path, server):
    server.route(
        "/private", lambda seen: Reply(200, "in") if seen.header("Authorization") else Reply(401, "out")
    )
    url = server.url("/private")
    run = run_steps(
        tmp_path,
        [
            {"id": "basic", "http": {"url": url, "auth": {"basic": ["deploy", "{{ password }}"]}}},
            {"id": "bearer", "http": {"url": url, "auth": {"bearer": "{{ token }}"}}},
            {"id": "none", "http": url, "continue_on_error": True},
        ],
        "-e",
        f"password={PASSWORD}",
        "-e",
        f"token={TOKEN}",
    )
    basic, bearer, none = server.requests("/private")
    expected = base64.b64encode(f"deploy:{PASSWORD}".encode()).decode()
    assert basic.header("Authorization") == f"Basic {expected}"
    assert bearer.header("Authorization") == f"Bearer {TOKEN}"
    assert none.header("Authorization") is None
    assert run.step("basic")["status"] == "ok" and run.step("bearer")["status"] == "ok"
    assert "401" in one_line_error(run.step("none"))
    for secret in (PASSWORD, TOKEN, expected):
        assert secret not in run.stdout and secret not in run.stderr


def test_secrets_in_headers_urls_and_echoed_bodies_never_print(tmp_path, server):
    """A server that echoes what it received back, in its body and headers, on success and failure."""

    def echo(seen: Seen) -> Reply:
        text = json.dumps({"headers": seen.headers, "query": seen.query})
        fail = "fail" in seen.query
        return Reply(
            500 if fail else 200,
            text,
            {
                "Content-Type": "application/json",
                "X-Echo-Auth": seen.header("Authorization") or "",
                "Set-Cookie": f"session={TOKEN}",
            },
        )

    server.route("/echo", echo)
    url = server.url("/echo").replace("127.0.0.1", "deploy:{{ password }}@127.0.0.1")
    secret_headers = {
        "Authorization": "Token {{ token }}",
        "X-Api-Key": "{{ token }}",
        "Cookie": "sid={{ token }}",
    }
    steps = [
        {"id": "ok", "http": {"url": url + "?api_key={{ token }}&page=2", "headers": secret_headers}},
        {
            "id": "failing",
            "http": {
                "url": url + "?fail=1&access_token={{ token }}",
                "params": {"secret": "{{ password }}"},
                "headers": secret_headers,
            },
            "continue_on_error": True,
        },
    ]
    run = run_steps(tmp_path, steps, "-e", f"password={PASSWORD}", "-e", f"token={TOKEN}")
    ok, failing = server.requests("/echo")
    assert ok.header("X-Api-Key") == TOKEN and ok.query["api_key"] == [TOKEN], (
        "the server got the real values"
    )
    assert failing.query["secret"] == [PASSWORD]
    assert TOKEN not in run.stdout + run.stderr
    assert PASSWORD not in run.stdout + run.stderr
    result = run.step("ok")["result"]
    assert result["status_code"] == 200
    assert result["url"] == server.url("/echo?api_key=***&page=2").replace(
        "127.0.0.1", "deploy:***@127.0.0.1"
    )
    assert result["headers"]["X-Echo-Auth"] == "***" and result["headers"]["Set-Cookie"] == "***"
    assert result["json"]["headers"]["X-Api-Key"] == "***", "an echoed secret is masked in the body"
    assert result["json"]["query"]["page"] == ["2"]
    error = one_line_error(run.step("failing"))
    assert "500" in error and "access_token=***" in error and "deploy:***@" in error


# -- failures the network gives -----------------------------------------------------------------


def test_connection_refused_unknown_host_and_invalid_urls_are_one_line_errors(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # bound once, now nobody listens there
    cases = {
        "refused": f"http://127.0.0.1:{port}/x",
        "dns": "http://no-such-host.invalid/",
        "no_scheme": "example.com/health",
        "ftp": "ftp://127.0.0.1/file",
        "bad_port": "http://127.0.0.1:99999/",
        "no_host": "http:///path",
    }
    steps = [{"id": key, "http": url, "continue_on_error": True} for key, url in cases.items()]
    run = run_steps(tmp_path, steps)
    assert run.returncode == 0  # every failure is ignored
    errors = {key: one_line_error(run.step(key)) for key in cases}
    assert "connection refused" in errors["refused"] and f"127.0.0.1:{port}" in errors["refused"]
    assert "unknown host no-such-host.invalid" in errors["dns"] and "DNS" in errors["dns"]
    assert "no scheme" in errors["no_scheme"] and "http://" in errors["no_scheme"]
    assert "'ftp'" in errors["ftp"]
    assert "port" in errors["bad_port"]
    assert "no host" in errors["no_host"]
    for key in cases:
        assert errors[key].startswith("GET "), errors[key]


def test_a_read_timeout_says_read_and_a_connect_timeout_says_connect(tmp_path, server):
    server.route("/slow", Reply(200, "late", hold=30))
    # A listener whose accept queue is full: the kernel drops further SYNs, so connects hang.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname())
    try:
        run = run_steps(
            tmp_path,
            [
                {
                    "id": "read",
                    "http": {"url": server.url("/slow"), "timeout": {"connect": "5s", "read": "300ms"}},
                    "continue_on_error": True,
                },
                {
                    "id": "connect",
                    "http": {"url": f"http://127.0.0.1:{full.getsockname()[1]}/", "timeout": "300ms"},
                    "continue_on_error": True,
                },
            ],
        )
    finally:
        filler.close()
        full.close()
    read = run.step("read")
    error = one_line_error(read)
    assert "read timeout" in error and "300ms" in error
    assert read["duration"] >= 0.3
    error = one_line_error(run.step("connect"))
    assert "connect timeout" in error and "300ms" in error
    assert run.step("connect")["duration"] >= 0.3


def test_a_step_timeout_cuts_a_request_the_server_holds(tmp_path, server):
    server.route("/held", Reply(200, "never in time", hold=60))
    run = run_steps(
        tmp_path,
        [{"id": "held", "http": {"url": server.url("/held"), "timeout": "60s"}, "timeout": "500ms"}],
    )
    step = run.step("held")
    assert "timed out" in one_line_error(step)
    assert step["duration"] >= 0.5
    # The run ended while the server still held the answer, and the client had hung up.
    assert not server.released.is_set()
    assert len(server.hung_up) == 1


def test_5xx_answers_are_retried_until_the_server_recovers(tmp_path, server):
    def flaky(seen: Seen) -> Reply:
        count = len(server.requests("/flaky"))
        return Reply(503, f"busy {count}") if count <= 2 else Reply(200, "ready")

    server.route("/flaky", flaky)
    server.route("/gone", Reply(410, "gone for good"))
    run = run_steps(
        tmp_path,
        [
            {"id": "flaky", "http": server.url("/flaky"), "retry": {"attempts": 5, "delay": "200ms"}},
            {
                "id": "only_503",
                "http": server.url("/gone"),
                "retry": {"attempts": 3, "delay": "10ms", "on": [{"status": [503]}]},
                "continue_on_error": True,
            },
        ],
    )
    step = run.step("flaky")
    assert step["status"] == "ok", step
    assert step["attempts"] == 3
    assert step["result"]["text"] == "ready"
    assert [h["status"] for h in step["result"]["history"]] == ["failed", "failed", "ok"]
    assert "503" in step["result"]["history"][0]["error"]
    times = [seen.at for seen in server.requests("/flaky")]
    assert len(times) == 3
    assert all(later - earlier >= 0.2 for earlier, later in itertools.pairwise(times))
    # retry.on {status: [503]} reads the failed attempt's status_code: a 410 is not retried.
    assert run.step("only_503")["attempts"] == 1 and len(server.requests("/gone")) == 1


def test_a_loop_in_parallel_shares_keep_alive_connections(tmp_path, server):
    server.route("/item", Reply(200, "ok"))
    run = run_steps(
        tmp_path,
        [
            {
                "id": "many",
                "http": {"url": server.url("/item") + "?n={{ item }}"},
                "loop": list(range(60)),
                "loop_parallel": 6,
            }
        ],
    )
    assert run.returncode == 0, run.stderr
    results = run.step("many")["result"]["results"]
    assert len(results) == 60 and {r["status_code"] for r in results} == {200}
    seen = server.requests("/item")
    assert sorted(int(s.query["n"][0]) for s in seen) == list(range(60))
    connections = {s.client_port for s in seen}
    assert len(connections) <= 12, f"{len(connections)} connections for 60 requests: no reuse"


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_tls_verification_fails_without_the_ca_and_passes_with_it(tmp_path, certificates):
    with serving(tls=(certificates["cert"], certificates["key"])) as tls:
        tls.route("/secure", Reply(200, "secret stuff"))
        run = run_steps(
            tmp_path,
            [
                {"id": "default", "http": tls.url("/secure"), "continue_on_error": True},
                {"id": "with_ca", "http": {"url": tls.url("/secure"), "verify": str(certificates["ca"])}},
                {"id": "unchecked", "http": {"url": tls.url("/secure"), "verify": False}},
                {
                    "id": "missing_ca",
                    "http": {"url": tls.url("/secure"), "verify": "no-such-ca.pem"},
                    "continue_on_error": True,
                },
                {
                    "id": "plain_to_tls",
                    "http": tls.url("/secure").replace("https://", "http://"),
                    "continue_on_error": True,
                },
            ],
        )
        assert len(tls.requests("/secure")) == 2, "only the verified and the unchecked requests got through"
    error = one_line_error(run.step("default"))
    assert "certificate verification failed" in error
    assert "verify: /path/to/ca.pem" in error
    assert run.step("with_ca")["result"]["text"] == "secret stuff"
    assert run.step("unchecked")["result"]["status_code"] == 200
    assert "Warning" not in run.stderr, "verify: false was asked for: no warning per request"
    error = one_line_error(run.step("missing_ca"))
    assert "no-such-ca.pem" in error and "not found" in error
    assert run.step("plain_to_tls")["status"] == "failed"


def test_https_to_a_plain_http_port_is_a_tls_error(tmp_path, server):
    server.route("/", Reply(200, "plain"))
    run = run_steps(
        tmp_path,
        [{"id": "mixed", "http": server.url("/").replace("http://", "https://"), "continue_on_error": True}],
    )
    error = one_line_error(run.step("mixed"))
    assert "TLS" in error


# -- downloads ------------------------------------------------------------------------------------


def test_download_writes_the_file_atomically_and_checks_sha256(tmp_path, server):
    payload = bytes(range(256)) * 12_288  # 3 MiB
    digest = hashlib.sha256(payload).hexdigest()
    server.route("/app.tar.gz", Reply(200, payload, {"Content-Type": "application/octet-stream"}))
    out = tmp_path / "releases"
    steps = [
        {
            "id": "plain",
            "http": {"url": server.url("/app.tar.gz"), "download_to": "releases/deep/app.tar.gz"},
        },
        {
            "id": "into",
            "http": {"url": server.url("/app.tar.gz"), "download_to": "releases/", "sha256": digest},
        },
    ]
    run = run_steps(tmp_path, steps)
    assert run.returncode == 0, run.stderr
    plain = run.step("plain")
    assert plain["status"] == "changed"
    assert (out / "deep" / "app.tar.gz").read_bytes() == payload
    assert plain["result"]["bytes"] == len(payload) and plain["result"]["throughput"] > 0
    assert plain["result"]["path"] == str(out / "deep" / "app.tar.gz")
    into = run.step("into")["result"]
    assert into["path"] == str(out / "app.tar.gz") and into["sha256"] == digest
    assert (out / "app.tar.gz").read_bytes() == payload
    assert leftovers(out) == [] and leftovers(out / "deep") == []
    requests_before = len(server.requests("/app.tar.gz"))

    again = run_steps(
        tmp_path,
        [
            {
                "id": "same",
                "http": {
                    "url": server.url("/app.tar.gz"),
                    "download_to": "releases/app.tar.gz",
                    "sha256": digest,
                },
            }
        ],
    )
    same = again.step("same")
    assert same["status"] == "ok" and same["result"]["changed"] is False
    assert len(server.requests("/app.tar.gz")) == requests_before, (
        "a file with the right digest is not fetched"
    )

    (out / "app.tar.gz").write_bytes(b"old release")
    wrong = "0" * 64
    bad = run_steps(
        tmp_path,
        [
            {
                "id": "bad",
                "http": {
                    "url": server.url("/app.tar.gz"),
                    "download_to": "releases/app.tar.gz",
                    "sha256": wrong,
                },
            }
        ],
    )
    error = one_line_error(bad.step("bad"))
    assert "checksum mismatch" in error and digest in error and wrong in error
    assert (out / "app.tar.gz").read_bytes() == b"old release"
    assert leftovers(out) == []


def test_a_connection_dropped_mid_download_leaves_no_file_and_the_old_one_intact(tmp_path, server):
    payload = b"x" * (2 * 1024 * 1024)
    server.route("/cut", Reply(200, payload, drop_after=300_000))
    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / "kept.bin").write_bytes(b"previous version")
    run = run_steps(
        tmp_path,
        [
            {
                "id": "new",
                "http": {"url": server.url("/cut"), "download_to": "dl/new.bin"},
                "continue_on_error": True,
            },
            {
                "id": "kept",
                "http": {"url": server.url("/cut"), "download_to": "dl/kept.bin"},
                "continue_on_error": True,
            },
        ],
    )
    for step_id in ("new", "kept"):
        error = one_line_error(run.step(step_id))
        assert "left as it was" in error
    assert not (folder / "new.bin").exists()
    assert (folder / "kept.bin").read_bytes() == b"previous version"
    assert leftovers(folder) == []


def test_a_download_that_answers_an_error_status_writes_nothing(tmp_path, server):
    server.route("/nope", Reply(404, "no such release"))
    run = run_steps(tmp_path, [{"id": "dl", "http": {"url": server.url("/nope"), "download_to": "out.bin"}}])
    error = one_line_error(run.step("dl"))
    assert "404" in error and "no such release" in error
    assert not (tmp_path / "out.bin").exists() and leftovers(tmp_path) == []


# -- dry run ----------------------------------------------------------------------------------------


def test_dry_run_sends_nothing_unless_the_step_says_dry_run_run(tmp_path, server):
    server.route("/get", Reply(200, "fine"))
    server.route("/post", Reply(200, "posted"))
    steps = [
        {
            "id": "get",
            "http": {
                "url": server.url("/get") + "?token={{ token }}",
                "headers": {"Authorization": "Bearer {{ token }}"},
            },
        },
        {"id": "post", "http": {"url": server.url("/post"), "method": "POST", "json": {"a": 1}}},
        {"id": "download", "http": {"url": server.url("/get"), "download_to": "out.txt"}},
        {"id": "forced", "http": server.url("/get"), "dry_run": "run"},
    ]
    run = run_steps(tmp_path, steps, "--dry-run", "-e", f"token={TOKEN}")
    assert run.returncode == 0, run.stderr
    assert len(server.requests("/get")) == 1, "only the step with dry_run: run sent its GET"
    assert server.requests("/post") == []
    assert not (tmp_path / "out.txt").exists()
    get = run.step("get")["result"]
    assert get["dry_run"].startswith("would send GET ")
    assert "token=***" in get["dry_run"] and "Authorization: ***" in get["dry_run"]
    assert TOKEN not in get["dry_run"]
    assert get["verdict"] == "no change"
    post = run.step("post")["result"]
    assert "POST" in post["dry_run"] and post["verdict"] == "would change"
    assert "out.txt" in run.step("download")["result"]["dry_run"]
    assert run.step("forced")["result"]["text"] == "fine"


# -- unit level -------------------------------------------------------------------------------------


def test_url_and_header_redaction():
    assert redact_url("https://u:p4ss@h.example/x?token=abc&page=2&X-Amz-Signature=ff#f") == (
        "https://u:***@h.example/x?token=***&page=2&X-Amz-Signature=***#f"
    )
    assert redact_url("https://h.example/x?q=1") == "https://h.example/x?q=1"
    assert redact_url("https://user@h.example/") == "https://user@h.example/"
    headers = redact_headers(
        {"Authorization": "Bearer x", "X-Auth-Token": "y", "Accept": "*/*", "WWW-Authenticate": "Basic"}
    )
    assert headers == {
        "Authorization": "***",
        "X-Auth-Token": "***",
        "Accept": "*/*",
        "WWW-Authenticate": "Basic",
    }
    scrub = Scrubber(["s3cr3t", "ab", None])
    assert scrub.text("a s3cr3t ab") == "a *** ab", "values too short to search for are left"
    assert scrub.value({"k": ["s3cr3t!"]}) == {"k": ["***!"]}


def test_redact_masks_every_secret_argument_for_display():
    args = {
        "url": f"https://deploy:{PASSWORD}@h.example/x?token={TOKEN}",
        "headers": {"Authorization": f"Bearer {TOKEN}", "Accept": "text/plain"},
        "params": {"api_key": TOKEN, "page": 1},
        "json": {"user": "ann", "password": PASSWORD, "nested": [{"client_secret": TOKEN}]},
        "auth": {"basic": ["deploy", PASSWORD]},
    }
    shown = http.redact(args)
    text = json.dumps(shown)
    assert TOKEN not in text and PASSWORD not in text
    assert shown["headers"]["Accept"] == "text/plain" and shown["params"]["page"] == 1
    assert shown["json"]["user"] == "ann" and shown["auth"] == {"basic": ["deploy", "***"]}
    assert http.redact({"url": "http://h/", "auth": {"bearer": TOKEN}})["auth"] == {"bearer": "***"}
    assert args["auth"]["basic"][1] == PASSWORD, "the arguments themselves are left alone"


def test_arguments_are_checked_before_anything_is_sent(tmp_path):
    ctx = TaskContext(step_label="unit", cwd=str(tmp_path))
    for args, expected in (
        ({"url": "http://127.0.0.1:9/", "sha256": "a" * 64}, "download_to"),
        ({"url": "http://127.0.0.1:9/", "body_contains": "x", "download_to": "f"}, "do not go together"),
        ({"url": "http://127.0.0.1:9/", "headers": {"X-Name": "ünïcødé ✓"}}, "Latin-1"),
        ({"url": "http://127.0.0.1:9/", "verify": "missing.pem"}, "not found"),
    ):
        with pytest.raises(HandlerError, match=expected):
            http.run(args, ctx)


def test_a_download_reports_byte_progress_up_to_the_whole_size(tmp_path, server):
    payload = b"p" * (5 * 1024 * 1024 + 123)
    server.route("/big.bin", Reply(200, payload))
    reports: list[tuple[int, int]] = []
    ctx = TaskContext(step_label="unit", cwd=str(tmp_path), emit_progress=lambda d, t: reports.append((d, t)))
    result = http.run({"url": server.url("/big.bin"), "download_to": "big.bin"}, ctx)
    assert (tmp_path / "big.bin").read_bytes() == payload and result["bytes"] == len(payload)
    assert len(reports) >= 5, "progress comes as the bytes arrive, not once at the end"
    assert reports[-1] == (len(payload), len(payload))
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)


def test_a_cancelled_context_stops_a_request_held_by_the_server(server):
    """In-process: the watcher shuts the socket of a cancelled request; the handler says cancelled."""
    server.route("/held", Reply(200, "late", hold=30))
    ctx = TaskContext(step_label="unit")
    start = time.monotonic()
    threading.Timer(0.3, ctx.cancel_event.set).start()
    with pytest.raises(HandlerError, match="cancelled"):
        http.run({"url": server.url("/held"), "timeout": "30s"}, ctx)
    assert time.monotonic() - start >= 0.3
    assert not server.released.is_set()


# -- the example playbook -------------------------------------------------------------------------


def test_the_health_check_example_runs_as_shipped(tmp_path):
    run = play(tmp_path, (REPO / "playbooks" / "health-check.yml").read_text(), name="health-check.yml")
    assert run.returncode == 0, run.stderr
    health = run.step("health")["result"]
    assert health["status_code"] == 200 and health["json"]["version"] == "1.4.2"
    fetch = run.step("fetch")["result"]
    assert fetch["sha256"] == run.step("digest")["result"]["digest"]
    assert fetch["bytes"] == health["bytes"]
    assert run.step("notify")["result"]["status_code"] == 204
    assert [e["open"] for e in run.step("up")["result"]["ports"]] == [True, True]
    assert not Path(fetch["path"]).exists(), "finally removed the site"

    dry = play(tmp_path, (REPO / "playbooks" / "health-check.yml").read_text(), "--dry-run", name="dry.yml")
    assert dry.returncode == 0, dry.stderr
    assert dry.step("health")["result"]["json"]["version"] == "1.4.2", "dry_run: run sent the GET"
    assert dry.step("fetch")["result"]["dry_run"].startswith("would send GET ")
    assert "bytes" not in dry.step("fetch")["result"]
    assert dry.step("notify")["result"]["verdict"] == "would change"


def test_the_dry_run_plan_and_default_labels_mask_secret_arguments(tmp_path):
    run = play(
        tmp_path,
        """\
name: planned
steps:
  - http: {url: "http://user:pa55word@127.0.0.1:9/x?token=abc123&page=2", headers: {X-Api-Key: sekrit-key}}
""",
        "--dry-run",
    )
    assert run.returncode == 0, run.stderr
    for secret in ("pa55word", "abc123", "sekrit-key"):
        assert secret not in run.stdout and secret not in run.stderr
    (finished,) = [e for e in run.events if e["event"] == "step_finished"]
    assert finished["result"]["args"]["headers"] == {"X-Api-Key": "***"}
    assert "page=2" in finished["step"]["label"] and "token=***" in finished["step"]["label"]
