"""The ``s3_upload`` handler (SPEC §5 row s3_upload, §8 unchanged), against a real S3 server.

Every test runs a real ``runbook play --output json`` process against moto's S3 server
mode over HTTP on 127.0.0.1 (``tests/s3server.py``), started once for this module, with
dummy credentials passed in the child's environment. What landed is read back with boto3
from the same server: keys, bytes, metadata, parts. Each test has its own bucket.

Faults are real: a TCP proxy between runbook and the server resets chosen requests (a
dropped connection) or holds them (a slow network), and a step ``timeout`` cancels an
upload that is under way. moto does not verify the checksums uploads carry (a wrong
``x-amz-checksum-sha256`` or ``Content-MD5`` is accepted: checked when this was written),
so the tests check, through the proxy, that runbook sends them for the server to verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_cli
from .playing import Play, one_line_error, play
from .s3server import CREDENTIALS, NO_CREDENTIALS, AuthMotoServer, FaultProxy, MotoServer

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    moto = MotoServer()
    try:
        yield moto
    finally:
        moto.stop()


@pytest.fixture
def s3(server: MotoServer) -> Any:
    return server.client()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"rb-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def proxy(server: MotoServer) -> Iterator[FaultProxy]:
    fault = FaultProxy(server.port)
    try:
        yield fault
    finally:
        fault.close()


# -- helpers ------------------------------------------------------------------------------------


def upload(
    tmp_path: Path,
    args: dict[str, Any],
    *flags: str,
    env: dict[str, str] | None = None,
    step: dict[str, Any] | None = None,
    env_block: dict[str, str] | None = None,
) -> Play:
    """Run one ``s3_upload`` step (id ``up``); JSON is YAML, so any path is quoted safely.

    ``env`` is the process environment (dummy credentials by default); ``env_block`` the
    playbook's ``env:``."""
    book = {"name": "s3-tests", "steps": [{"id": "up", "s3_upload": args, **(step or {})}]}
    if env_block:
        book["env"] = env_block
    return play(tmp_path, json.dumps(book), *flags, env=CREDENTIALS if env is None else env)


def several(tmp_path: Path, steps: dict[str, dict[str, Any]]) -> Play:
    """Several ``s3_upload`` steps (by id) in one playbook, each going on if one fails."""
    book = {
        "name": "s3-tests",
        "steps": [{"id": key, "s3_upload": args, "continue_on_error": True} for key, args in steps.items()],
    }
    return play(tmp_path, json.dumps(book), env=CREDENTIALS)


def result(run: Play, key: str = "up") -> dict[str, Any]:
    step = run.step(key)
    assert step["status"] in ("ok", "changed"), step
    return step["result"]


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def objects(s3: Any, bucket: str) -> dict[str, bytes]:
    """Every object of the bucket with its bytes, read back from the server."""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def unfinished(s3: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- sources and keys ---------------------------------------------------------------------------


def test_a_single_file_lands_at_its_key_with_its_digest(tmp_path, server, s3, bucket):
    data = os.urandom(70_000)
    (tmp_path / "report.json").write_bytes(data)
    run = upload(
        tmp_path, {"src": "report.json", "bucket": bucket, "key": "daily/r.json", "endpoint_url": server.url}
    )
    got = result(run)
    head = s3.head_object(Bucket=bucket, Key="daily/r.json")
    assert objects(s3, bucket) == {"daily/r.json": data}
    assert got["uploaded"] == [{"key": "daily/r.json", "size": len(data), "etag": head["ETag"].strip('"')}]
    assert got["bytes"] == len(data) and got["files"] == 1 and got["unchanged"] == 0
    assert run.step("up")["status"] == "changed"
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert head["ContentType"] == "application/json"  # guessed from the name


def test_a_key_ending_with_slash_and_a_prefix_both_take_the_file_name(tmp_path, server, s3, bucket):
    (tmp_path / "a.txt").write_bytes(b"A")
    (tmp_path / "b.txt").write_bytes(b"B")
    run = several(
        tmp_path,
        {
            "a": {"src": "a.txt", "bucket": bucket, "key": "in/", "endpoint_url": server.url},
            "b": {"src": "b.txt", "bucket": bucket, "prefix": "/pre", "endpoint_url": server.url},
        },
    )
    assert result(run, "a")["uploaded"] and result(run, "b")["uploaded"]
    assert objects(s3, bucket) == {"in/a.txt": b"A", "pre/b.txt": b"B"}


def test_a_folder_lands_under_the_prefix_by_relative_path(tmp_path, server, s3, bucket):
    files = {
        "top.txt": b"top",
        "sub/deeper/x.bin": os.urandom(5000),
        "sub/y.csv": b"a,b\n",
        ".hidden": b"dot files too",
        "empty.dat": b"",
        "sub/ünï cödé +&=%.txt": b"any name",
    }
    src = tree(tmp_path / "data", files)
    got = result(
        upload(
            tmp_path, {"src": str(src), "bucket": bucket, "prefix": "backup/2024", "endpoint_url": server.url}
        )
    )
    # The expected keys come from walking the folder here, not from runbook.
    expected = {}
    for folder, _, names in os.walk(src):
        for name in names:
            path = Path(folder, name)
            expected["backup/2024/" + path.relative_to(src).as_posix()] = path.read_bytes()
    assert objects(s3, bucket) == expected
    assert sorted(u["key"] for u in got["uploaded"]) == sorted(expected)
    assert got["bytes"] == sum(len(v) for v in expected.values())
    assert got["location"] == f"s3://{bucket}/backup/2024/"


def test_a_glob_uploads_its_matches_by_path_below_its_fixed_part(tmp_path, server, s3, bucket):
    tree(
        tmp_path / "logs",
        {"app.log": b"1", "old/app.log": b"2", "old/app.txt": b"no", "x/y/z.log": b"3", ".hidden.log": b"no"},
    )
    result(
        upload(
            tmp_path, {"src": "logs/**/*.log", "bucket": bucket, "prefix": "l/", "endpoint_url": server.url}
        )
    )
    assert objects(s3, bucket) == {"l/app.log": b"1", "l/old/app.log": b"2", "l/x/y/z.log": b"3"}


def test_exclude_leaves_files_out(tmp_path, server, s3, bucket):
    src = tree(tmp_path / "d", {"keep.txt": b"k", "skip.tmp": b"s", "sub/also.tmp": b"s"})
    result(
        upload(tmp_path, {"src": str(src), "bucket": bucket, "exclude": "*.tmp", "endpoint_url": server.url})
    )
    assert objects(s3, bucket) == {"keep.txt": b"k"}


def test_extra_args_are_visible_on_the_object(tmp_path, server, s3, bucket):
    (tmp_path / "page.html").write_text("<p>hi</p>")
    (tmp_path / "dump.sql.gz").write_bytes(b"\x1f\x8b not really")
    extra = {
        "ContentType": "text/plain; charset=utf-8",
        "Metadata": {"owner": "ops", "ticket": "OPS-1"},
        "StorageClass": "STANDARD_IA",
        "CacheControl": "max-age=60",
    }
    run = several(
        tmp_path,
        {
            "page": {"src": "page.html", "bucket": bucket, "extra_args": extra, "endpoint_url": server.url},
            "dump": {"src": "dump.sql.gz", "bucket": bucket, "endpoint_url": server.url},
        },
    )
    assert result(run, "page")["uploaded"] and result(run, "dump")["uploaded"]
    head = s3.head_object(Bucket=bucket, Key="page.html")
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {
        "owner": "ops",
        "ticket": "OPS-1",
        "sha256": hashlib.sha256(b"<p>hi</p>").hexdigest(),
    }
    # Without ContentType, a compressed file is said to be what it is, with no Content-Encoding
    # (a browser or client would otherwise unpack it on download).
    head = s3.head_object(Bucket=bucket, Key="dump.sql.gz")
    assert head["ContentType"] == "application/gzip" and "ContentEncoding" not in head


def test_every_upload_carries_checksums_for_the_server_to_verify(tmp_path, s3, bucket, proxy):
    small, big = os.urandom(3000), os.urandom(11 * MiB)
    src = tree(tmp_path / "d", {"small.bin": small, "big.bin": big})
    args = {"src": str(src), "bucket": bucket, "endpoint_url": proxy.url, "multipart_threshold": "5MiB"}
    result(upload(tmp_path, args))
    assert objects(s3, bucket) == {"small.bin": small, "big.bin": big}
    (put,) = proxy.requests(lambda r: r.is_put_object())
    assert put.path.endswith("/small.bin")
    assert put.headers["x-amz-checksum-sha256"] == sha256_b64(small)
    assert put.headers["content-md5"] == base64.b64encode(hashlib.md5(small).digest()).decode()
    parts = proxy.requests(lambda r: r.is_part())
    assert len(parts) == 3  # 5 + 5 + 1 MiB
    assert all("x-amz-checksum-crc32" in part.headers for part in parts)


# -- unchanged ------------------------------------------------------------------------------------


def test_an_unchanged_folder_uploads_nothing_the_second_time(tmp_path, s3, bucket, proxy):
    files = {f"f{i:02d} ü+%.txt": os.urandom(100 + i) for i in range(20)}
    src = tree(tmp_path / "d", files)
    args = {"src": str(src), "bucket": bucket, "prefix": "p", "endpoint_url": proxy.url}
    first = upload(tmp_path, args)
    assert len(result(first)["uploaded"]) == 20
    before = len(proxy.seen)

    again = upload(tmp_path, args)
    step = again.step("up")
    assert step["status"] == "ok" and step["result"]["changed"] is False
    assert step["result"]["unchanged"] == 20 and step["result"]["uploaded"] == []
    asked = proxy.seen[before:]
    # One listing, and nothing else: the digests recorded at the first run are still good.
    assert [(r.method, "list-type" in r.query) for r in asked] == [("GET", True)]

    # With no record (another machine, a fresh RUNBOOK_HOME), each object is asked about once.
    before = len(proxy.seen)
    fresh = upload(tmp_path, args, env={**CREDENTIALS, "RUNBOOK_HOME": str(tmp_path / "other-home")})
    assert result(fresh)["unchanged"] == 20 and result(fresh)["uploaded"] == []
    heads = [r for r in proxy.seen[before:] if r.method == "HEAD"]
    assert len(heads) == 20 and not [r for r in proxy.seen[before:] if r.method == "PUT"]


def test_a_changed_file_or_a_replaced_object_is_uploaded_again(tmp_path, server, s3, bucket):
    files = {"same.txt": b"same", "edit.txt": b"aaaa", "replaced.txt": b"mine"}
    src = tree(tmp_path / "d", files)
    args = {"src": str(src), "bucket": bucket, "endpoint_url": server.url}
    result(upload(tmp_path, args))
    (src / "edit.txt").write_bytes(b"bbbb")  # same size, new content
    s3.put_object(Bucket=bucket, Key="replaced.txt", Body=b"othr")  # someone else's, same size
    got = result(upload(tmp_path, args))
    assert sorted(u["key"] for u in got["uploaded"]) == ["edit.txt", "replaced.txt"]
    assert got["unchanged"] == 1
    assert objects(s3, bucket) == {"same.txt": b"same", "edit.txt": b"bbbb", "replaced.txt": b"mine"}


def test_skip_unchanged_false_uploads_everything_again(tmp_path, server, s3, bucket, proxy):
    (tmp_path / "a.txt").write_bytes(b"a")
    args = {"src": "a.txt", "bucket": bucket, "endpoint_url": proxy.url, "skip_unchanged": False}
    result(upload(tmp_path, args))
    got = result(upload(tmp_path, args))
    assert len(got["uploaded"]) == 1
    assert len(proxy.requests(lambda r: r.is_put_object())) == 2
    assert not proxy.requests(lambda r: "list-type" in r.query)


# -- multipart ---------------------------------------------------------------------------------


def test_a_file_past_the_threshold_goes_up_in_parts(tmp_path, server, s3, bucket):
    big, below = os.urandom(12 * MiB + 5), os.urandom(4 * MiB)
    src = tree(tmp_path / "d", {"big.bin": big, "below.bin": below})
    args = {"src": str(src), "bucket": bucket, "endpoint_url": server.url, "multipart_threshold": "5MiB"}
    got = result(upload(tmp_path, args))
    assert s3.head_object(Bucket=bucket, Key="big.bin", PartNumber=1)["PartsCount"] == 3  # 5 + 5 + 2 MiB
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"] == len(big)
    assert "PartsCount" not in s3.head_object(Bucket=bucket, Key="below.bin", PartNumber=1)
    assert objects(s3, bucket) == {"big.bin": big, "below.bin": below}
    etags = {u["key"]: u["etag"] for u in got["uploaded"]}
    assert etags["big.bin"] == s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].strip('"')
    assert etags["big.bin"].endswith("-3")
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["Metadata"]["sha256"] == hashlib.sha256(big).hexdigest()
    # Unchanged the second time, parts and all.
    assert result(upload(tmp_path, args))["unchanged"] == 2


def test_a_part_that_keeps_failing_fails_the_step_and_leaves_no_upload(tmp_path, s3, bucket, proxy):
    (tmp_path / "big.bin").write_bytes(os.urandom(16 * MiB))
    proxy.add(lambda r: r.is_part(2), "reset")
    args = {"src": "big.bin", "bucket": bucket, "endpoint_url": proxy.url, "multipart_threshold": "5MiB"}
    run = upload(tmp_path, args, env={**CREDENTIALS, "AWS_MAX_ATTEMPTS": "2"})
    error = one_line_error(run.step("up"))
    assert "big.bin" in error and "connection" in error
    assert len(proxy.requests(lambda r: r.is_part(2))) == 2  # tried, and retried once
    assert proxy.requests(lambda r: r.is_abort())
    assert unfinished(s3, bucket) == []
    assert objects(s3, bucket) == {}


def test_an_upload_whose_abort_failed_is_aborted_by_the_safety_net(tmp_path, s3, bucket, proxy):
    (tmp_path / "big.bin").write_bytes(os.urandom(11 * MiB))
    attempts = 2
    proxy.add(lambda r: r.is_part(2), "reset")
    proxy.add(lambda r: r.is_abort(), "reset", times=attempts)  # the transfer manager's abort fails
    args = {"src": "big.bin", "bucket": bucket, "endpoint_url": proxy.url, "multipart_threshold": "5MiB"}
    run = upload(tmp_path, args, env={**CREDENTIALS, "AWS_MAX_ATTEMPTS": str(attempts)})
    one_line_error(run.step("up"))
    assert len(proxy.requests(lambda r: r.is_abort())) == attempts + 1
    assert unfinished(s3, bucket) == []


def test_a_timeout_during_a_multipart_upload_aborts_it(tmp_path, s3, bucket, proxy):
    (tmp_path / "big.bin").write_bytes(os.urandom(21 * MiB))
    # A slow network: every part takes 3 s. The step's 3 s timeout falls while parts are on
    # their way (the upload starts within a second), and those parts end before the abort.
    proxy.add(lambda r: r.is_part(), "hold", seconds=3)
    args = {"src": "big.bin", "bucket": bucket, "endpoint_url": proxy.url, "multipart_threshold": "5MiB"}
    run = upload(tmp_path, args, step={"timeout": "3s"})
    assert "timed out" in one_line_error(run.step("up"))
    assert proxy.requests(lambda r: r.is_part())  # the upload was under way
    assert proxy.requests(lambda r: r.is_abort())
    assert unfinished(s3, bucket) == []
    assert objects(s3, bucket) == {}


# -- errors ----------------------------------------------------------------------------------------


def test_a_missing_bucket_is_one_line_naming_it(tmp_path, server):
    (tmp_path / "a.txt").write_bytes(b"a")
    run = upload(tmp_path, {"src": "a.txt", "bucket": "no-such-bucket-here", "endpoint_url": server.url})
    error = one_line_error(run.step("up"))
    assert "'no-such-bucket-here' does not exist" in error
    assert run.returncode == 1


def test_no_credentials_is_one_line_saying_what_to_set(tmp_path, server, bucket):
    (tmp_path / "a.txt").write_bytes(b"a")
    run = upload(tmp_path, {"src": "a.txt", "bucket": bucket, "endpoint_url": server.url}, env=NO_CREDENTIALS)
    error = one_line_error(run.step("up"))
    assert "no AWS credentials" in error
    assert "AWS_ACCESS_KEY_ID" in error and "AWS_PROFILE" in error


def test_credentials_in_the_playbook_env_are_used(tmp_path, server, s3, bucket):
    (tmp_path / "a.txt").write_bytes(b"a")
    keys = {k: v for k, v in CREDENTIALS.items() if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    args = {"src": "a.txt", "bucket": bucket, "endpoint_url": server.url}
    run = upload(tmp_path, args, env=NO_CREDENTIALS, env_block=keys)
    assert result(run)["uploaded"][0]["key"] == "a.txt"
    assert objects(s3, bucket) == {"a.txt": b"a"}


def test_credentials_s3_refuses_are_one_line_errors_and_write_only_keys_still_upload(tmp_path, marker):
    """With a server that checks signatures and IAM policies for real (moto, with auth on)."""
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "b.txt").write_bytes(b"b")
    server = AuthMotoServer(setup_requests=6)
    try:
        server.client("s3").create_bucket(Bucket="guarded")
        iam = server.client("iam")
        users = {}
        for user in ("writer", "nobody"):
            iam.create_user(UserName=user)
            users[user] = iam.create_access_key(UserName=user)["AccessKey"]
        write_only = {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::guarded/*"}
        iam.put_user_policy(
            UserName="writer",
            PolicyName="write-only",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [write_only]}),
        )  # the sixth request: from here on moto checks every one

        def as_user(user: str, secret: str | None = None) -> dict[str, str]:
            key = users[user]
            return {
                **NO_CREDENTIALS,
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": secret or key["SecretAccessKey"],
            }

        args = {"src": "a.txt", "bucket": "guarded", "endpoint_url": server.url}
        # Keys that may write but not list (common for backups): everything is uploaded.
        run = upload(tmp_path, args, env=as_user("writer"))
        assert result(run)["uploaded"][0]["key"] == "a.txt"
        assert any("access denied" in line for line in run.lines("up", "log"))
        writer = server.client("s3", users["writer"]["AccessKeyId"], users["writer"]["SecretAccessKey"])
        with pytest.raises(Exception, match="AccessDenied"):
            writer.list_objects_v2(Bucket="guarded")  # the denial was real
        # Keys with no right at all.
        run = upload(tmp_path, {**args, "src": "b.txt"}, env=as_user("nobody"))
        error = one_line_error(run.step("up"))
        assert error.startswith("access denied") and "s3://guarded/" in error
        # A wrong secret.
        run = upload(tmp_path, args, env=as_user("writer", secret="not-the-secret"))
        assert "secret key was refused" in one_line_error(run.step("up"))
        assert "not-the-secret" not in run.stdout + run.stderr
    finally:
        server.stop()


def test_an_unreachable_endpoint_is_one_line_naming_it(tmp_path, bucket):
    (tmp_path / "a.txt").write_bytes(b"a")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    run = upload(tmp_path, {"src": "a.txt", "bucket": bucket, "endpoint_url": endpoint})
    error = one_line_error(run.step("up"))
    assert f"cannot reach the S3 endpoint {endpoint}" in error and "connection refused" in error


def test_a_missing_source_is_one_line_and_asks_nothing_of_s3(tmp_path, bucket, proxy):
    run = several(
        tmp_path,
        {
            "folder": {"src": "nope/", "bucket": bucket, "endpoint_url": proxy.url},
            "glob": {"src": "nope/*.log", "bucket": bucket, "endpoint_url": proxy.url},
        },
    )
    assert f"source {tmp_path / 'nope'}" in one_line_error(run.step("folder"))
    assert "does not exist" in one_line_error(run.step("folder"))
    assert "no file matches nope/*.log" in one_line_error(run.step("glob"))
    assert not proxy.seen


def test_a_misspelt_extra_arg_is_refused_before_the_run(tmp_path):
    book = tmp_path / "p.yml"
    book.write_text(
        "name: p\nsteps:\n  - s3_upload: {src: a, bucket: bkt, extra_args: {ContentTyp: text/plain}}\n"
    )
    check = run_cli("validate", str(book))
    assert check.returncode == 2
    assert "ContentTyp" in check.stdout + check.stderr


# -- dry run -----------------------------------------------------------------------------------------


def test_dry_run_lists_what_would_go_and_uploads_nothing(tmp_path, server, s3, bucket, proxy):
    src = tree(tmp_path / "d", {"old.txt": b"old", "changed.txt": b"v1"})
    args = {"src": str(src), "bucket": bucket, "endpoint_url": proxy.url}
    result(upload(tmp_path, args))
    (src / "changed.txt").write_bytes(b"v2")
    (src / "new.txt").write_bytes(b"new")
    before = objects(s3, bucket)
    count = len(proxy.seen)
    run = upload(tmp_path, args, "--dry-run")
    got = result(run)
    assert [u["key"] for u in got["would_upload"]] == ["changed.txt", "new.txt"]
    assert got["would_skip"] == ["old.txt"] and got["changed"] is True
    assert "would upload 2 files" in got["dry_run"]
    assert objects(s3, bucket) == before
    assert {r.method for r in proxy.seen[count:]} <= {"GET", "HEAD"}


def test_dry_run_without_a_reachable_endpoint_says_unknown(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"a")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    args = {"src": "a.txt", "bucket": "bkt", "endpoint_url": endpoint}
    run = upload(tmp_path, args, "--dry-run", env={**CREDENTIALS, "AWS_MAX_ATTEMPTS": "1"})
    step = run.step("up")
    assert step["status"] in ("ok", "changed") and run.returncode == 0
    got = step["result"]
    assert got["verdict"] == "unknown"
    assert "unknown" in got["dry_run"] and "cannot reach" in got["dry_run"]
    assert got["would_upload"] == [{"key": "a.txt", "size": 1}]
