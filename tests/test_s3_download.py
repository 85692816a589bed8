"""The ``s3_download`` handler (SPEC §5b), against a real S3 server.

Every test runs a real ``runbook play --output json`` process against moto's S3 server
mode over HTTP on 127.0.0.1 (``tests/s3server.py``), started once for this module; the
objects are put there with boto3 first, and what landed on disk is compared byte for byte.
A dropped connection is real: a TCP proxy between runbook and the server resets the
requests of one object (``FaultProxy``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO
from .playing import Play, one_line_error, play
from .s3server import CREDENTIALS, NO_CREDENTIALS, FaultProxy, MotoServer

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


def steps(
    tmp_path: Path, server: MotoServer, *entries: dict[str, Any], flags: tuple[str, ...] = (), env: Any = None
) -> Play:
    """Run these steps in one playbook whose ``env:`` points S3 at the moto server."""
    book = {"name": "s3-download", "env": {"AWS_ENDPOINT_URL": server.url}, "steps": list(entries)}
    return play(tmp_path, json.dumps(book), *flags, env=CREDENTIALS if env is None else env)


def result_of(run: Play, key: str) -> dict[str, Any]:
    step = run.step(key)
    assert step["status"] in ("ok", "changed"), step
    return step["result"]


def files_under(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def put(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)


def test_a_prefix_lands_in_a_folder_and_a_key_in_a_file(tmp_path, server, s3, bucket):
    objects = {
        "db/top.sql": os.urandom(3000),
        "db/2024/01/x.gz": os.urandom(70_000),
        "db/.hidden": b"dot",
        "db/skip.tmp": b"excluded",
        "db/empty.dat": b"",
        "other/not-me": b"outside the prefix",
    }
    put(s3, bucket, objects)
    s3.put_object(Bucket=bucket, Key="db/folder-marker/", Body=b"")
    (tmp_path / "into").mkdir()
    run = steps(
        tmp_path,
        server,
        {
            "id": "tree",
            "s3_download": {"bucket": bucket, "prefix": "db", "dest": "restore", "exclude": "*.tmp"},
        },
        {"id": "file", "s3_download": {"bucket": bucket, "key": "db/top.sql", "dest": "one/top-copy.sql"}},
        {"id": "into", "s3_download": {"bucket": bucket, "key": "db/2024/01/x.gz", "dest": "into"}},
    )
    expected = {
        k[len("db/") :]: v for k, v in objects.items() if k.startswith("db/") and not k.endswith(".tmp")
    }
    assert files_under(tmp_path / "restore") == expected
    assert (tmp_path / "restore" / "folder-marker").is_dir()
    tree = result_of(run, "tree")
    assert sorted(d["key"] for d in tree["downloaded"]) == sorted(f"db/{k}" for k in expected)
    assert tree["bytes"] == sum(len(v) for v in expected.values()) and tree["objects"] == len(expected)
    assert run.step("tree")["status"] == "changed"
    modified = s3.head_object(Bucket=bucket, Key="db/top.sql")["LastModified"].timestamp()
    assert abs((tmp_path / "restore" / "top.sql").stat().st_mtime - modified) < 1
    assert (tmp_path / "one" / "top-copy.sql").read_bytes() == objects["db/top.sql"]
    assert (tmp_path / "into" / "x.gz").read_bytes() == objects["db/2024/01/x.gz"]
    assert result_of(run, "into")["downloaded"] == [
        {"key": "db/2024/01/x.gz", "path": str(tmp_path / "into" / "x.gz"), "size": 70_000}
    ]
    assert not [p for p in tmp_path.rglob("*.tmp") if p.name.startswith(".")]  # no temporary file left


def test_unchanged_files_are_skipped_by_etag_records_or_metadata(tmp_path, server, s3, bucket):
    from boto3.s3.transfer import TransferConfig

    plain, big = os.urandom(5000), os.urandom(17 * MiB)
    put(s3, bucket, {"d/plain.bin": plain, "d/same-size.txt": b"alpha"})
    # A multipart object in 8 MiB parts (ETag "md5-3"), as the AWS CLI makes, without runbook's metadata.
    (tmp_path / "big.bin").write_bytes(big)
    parts = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    s3.upload_file(str(tmp_path / "big.bin"), bucket, "d/big.bin", Config=parts)
    assert s3.head_object(Bucket=bucket, Key="d/big.bin")["ETag"].strip('"').endswith("-3")
    # Already there, never downloaded by runbook (no records): the multipart ETag and the
    # single-part ETag (an MD5) tell they are unchanged.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "big.bin").write_bytes(big)
    (tmp_path / "out" / "plain.bin").write_bytes(plain)
    args = {"bucket": bucket, "prefix": "d/", "dest": "out"}
    run = steps(
        tmp_path,
        server,
        {"id": "first", "s3_download": args},
        {"id": "again", "s3_download": args},
        {"write": {"path": "out/same-size.txt", "data": "ALPHA"}},  # same size, other content
        {"id": "third", "s3_download": args},
        {"id": "forced", "s3_download": {**args, "skip_unchanged": False}},
    )
    first = result_of(run, "first")
    assert [d["key"] for d in first["downloaded"]] == ["d/same-size.txt"] and first["unchanged"] == 2
    assert run.step("again")["status"] == "ok" and result_of(run, "again")["unchanged"] == 3
    third = result_of(run, "third")
    assert [d["key"] for d in third["downloaded"]] == ["d/same-size.txt"] and third["unchanged"] == 2
    assert len(result_of(run, "forced")["downloaded"]) == 3
    assert files_under(tmp_path / "out") == {"plain.bin": plain, "same-size.txt": b"alpha", "big.bin": big}


def test_a_file_already_there_with_the_objects_sha256_is_not_fetched(tmp_path, server, s3, bucket):
    data = os.urandom(20 * MiB)  # uploaded by s3_upload: multipart, its SHA-256 in the metadata
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(data)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "big.bin").write_bytes(data)
    run = steps(
        tmp_path,
        server,
        {"id": "up", "s3_upload": {"src": "src/big.bin", "bucket": bucket, "key": "big.bin"}},
        {"id": "down", "s3_download": {"bucket": bucket, "key": "big.bin", "dest": "out/"}},
    )
    assert "-" in result_of(run, "up")["uploaded"][0]["etag"]  # multipart: the ETag is no MD5
    down = result_of(run, "down")
    assert down["unchanged"] == 1 and down["downloaded"] == [] and run.step("down")["status"] == "ok"


def test_a_big_object_comes_in_ranges_and_a_wrong_checksum_changes_nothing(tmp_path, server, s3, bucket):
    big = os.urandom(20 * MiB + 7)
    put(s3, bucket, {"big.bin": big})
    bad = b"these are not the bytes whose digest the metadata holds"
    s3.put_object(
        Bucket=bucket, Key="bad.txt", Body=bad, Metadata={"sha256": hashlib.sha256(b"other").hexdigest()}
    )
    (tmp_path / "bad.txt").write_bytes(b"the old file")
    run = steps(
        tmp_path,
        server,
        {
            "id": "big",
            "s3_download": {"bucket": bucket, "key": "big.bin", "dest": "big.bin", "max_concurrency": 3},
        },
        {
            "id": "bad",
            "s3_download": {"bucket": bucket, "key": "bad.txt", "dest": "bad.txt"},
            "continue_on_error": True,
        },
    )
    assert (tmp_path / "big.bin").read_bytes() == big and result_of(run, "big")["bytes"] == len(big)
    error = one_line_error(run.step("bad"))
    assert "checksum mismatch" in error and "bad.txt" in error
    assert (tmp_path / "bad.txt").read_bytes() == b"the old file"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".bad.txt")) == []


def test_a_dropped_connection_leaves_the_old_file_and_no_temporary(tmp_path, server, s3, bucket):
    data = os.urandom(20 * MiB)
    put(s3, bucket, {"big.bin": data})
    (tmp_path / "big.bin").write_bytes(b"the old file")
    proxy = FaultProxy(server.port)
    try:
        # Every ranged GET of the object is reset: botocore's retries cannot get through.
        proxy.add(lambda r: r.method == "GET" and "range" in r.headers, "reset")
        args = {"bucket": bucket, "key": "big.bin", "dest": "big.bin", "endpoint_url": proxy.url}
        run = steps(tmp_path, server, {"id": "down", "s3_download": args})
    finally:
        proxy.close()
    error = one_line_error(run.step("down"))
    assert "cannot download s3://" in error and "big.bin" in error and run.returncode == 1
    assert proxy.requests(lambda r: r.method == "GET" and "range" in r.headers)  # it did try
    assert (tmp_path / "big.bin").read_bytes() == b"the old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "play.yml"]


def test_keys_that_would_land_outside_dest_are_refused_before_any_write(tmp_path, server, s3, bucket):
    put(s3, bucket, {"p/fine.txt": b"fine", "p/a/../../../escaped": b"evil"})
    run = steps(
        tmp_path, server, {"id": "down", "s3_download": {"bucket": bucket, "prefix": "p/", "dest": "out"}}
    )
    error = one_line_error(run.step("down"))
    assert "would land outside" in error and "escaped" in error
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escaped").exists()


def test_failures_and_dry_run(tmp_path, server, s3, bucket):
    put(s3, bucket, {"d/a.txt": b"alpha", "d/b.txt": b"bravo"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_bytes(b"alpha")
    run = steps(
        tmp_path,
        server,
        {"id": "plan", "s3_download": {"bucket": bucket, "prefix": "d/", "dest": "out"}},
        {"id": "no_bucket", "s3_download": {"bucket": "no-such-bucket", "prefix": "d/", "dest": "x"}},
        {"id": "no_key", "s3_download": {"bucket": bucket, "key": "d/missing", "dest": "x"}},
        flags=("--dry-run",),
    )
    plan = run.step("plan")["result"]
    assert [w["key"] for w in plan["would_download"]] == ["d/b.txt"] and plan["would_skip"] == ["d/a.txt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt"]
    assert "unknown" in run.step("no_bucket")["result"]["dry_run"]
    # The keys are in the playbook's env only, so one step can hide them with empty values.
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    cases = {
        "no_bucket": ({"bucket": "no-such-bucket", "prefix": "d/", "dest": "x"}, {}),
        "no_key": ({"bucket": bucket, "key": "d/missing", "dest": "x"}, {}),
        "no_credentials": ({"bucket": bucket, "key": "d/a.txt", "dest": "x"}, dict.fromkeys(keys, "")),
    }
    book = {
        "name": "s3-download-failures",
        "env": {"AWS_ENDPOINT_URL": server.url, **keys},
        "steps": [
            {"id": key, "s3_download": args, "env": env, "continue_on_error": True}
            for key, (args, env) in cases.items()
        ],
    }
    real = play(tmp_path, json.dumps(book), env=NO_CREDENTIALS)
    assert "'no-such-bucket' does not exist" in one_line_error(real.step("no_bucket"))
    assert "no object" in one_line_error(real.step("no_key"))
    assert "no AWS credentials" in one_line_error(real.step("no_credentials"))
    assert not (tmp_path / "x").exists()


def test_the_restore_example_works_as_shipped(tmp_path, server, s3, bucket):
    objects = {
        "app/2024-06-01/a.txt": b"alpha",
        "app/2024-06-01/sub/b.txt": b"bravo",
        "app/2024-06-02/c": b"no",
    }
    put(s3, bucket, objects)
    book = (REPO / "playbooks" / "s3-restore.yml").read_text()
    dest = tmp_path / "restored"
    args = ["-e", f"bucket={bucket}", "-e", "name=app", "-e", "day=2024-06-01", "-e", f"dest={dest}"]
    run = play(tmp_path, book, *args, env={**CREDENTIALS, "AWS_ENDPOINT_URL": server.url})
    assert run.finished()["exit_code"] == 0, run.stderr
    assert files_under(dest) == {"a.txt": b"alpha", "sub/b.txt": b"bravo"}
    assert run.step("verify")["status"] == "ok"
