"""The ``gcs_upload`` handler (SPEC §5b), against a real Cloud Storage emulator.

Every test runs a real ``runbook play --output json`` process against
``gcp-storage-emulator`` (``tests/gcsemulator.py``) on 127.0.0.1, started once for this
module and reached through ``STORAGE_EMULATOR_HOST``; what landed is read back with the
SDK from the same emulator. Each test has its own bucket, and runs its steps in one
playbook where it can (each runbook process pays for importing the SDK).

No test may reach Google: ``NO_GCE_CHECK=true`` and a closed loopback metadata host keep
application default credentials from probing the metadata server. The missing-extra test
puts an empty ``google`` package first on ``PYTHONPATH``, which really hides the SDK.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO
from .gcsemulator import GcsEmulator, free_port
from .playing import Play, one_line_error, play

if not os.environ.get("CI"):  # CI installs the SDK: there its absence fails the tests
    pytest.importorskip("google.cloud.storage")

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    server = GcsEmulator()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(emulator: GcsEmulator) -> str:
    name = f"rb-{uuid.uuid4().hex[:16]}"
    emulator.client().create_bucket(name)
    return name


def no_google(emulator_url: str = "") -> dict[str, str]:
    """An environment that cannot reach beyond loopback for credentials."""
    closed = f"127.0.0.1:{free_port()}"
    return {
        "STORAGE_EMULATOR_HOST": emulator_url,
        "GOOGLE_APPLICATION_CREDENTIALS": "",
        "GOOGLE_CLOUD_PROJECT": "",
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": closed,
        "GCE_METADATA_IP": closed,
    }


def steps(tmp_path: Path, *entries: dict[str, Any], flags: tuple[str, ...] = (), env: dict[str, str]) -> Play:
    book = {"name": "gcs-steps", "steps": list(entries)}
    return play(tmp_path, json.dumps(book), *flags, env=env)


def result_of(run: Play, key: str) -> dict[str, Any]:
    step = run.step(key)
    assert step["status"] in ("ok", "changed"), step
    return step["result"]


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def objects(emulator: GcsEmulator, bucket: str) -> dict[str, bytes]:
    client = emulator.client()
    return {b.name: b.download_as_bytes() for b in client.list_blobs(bucket)}


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_a_file_a_folder_and_a_glob_land_by_name(tmp_path, emulator, bucket):
    report = os.urandom(70_000)
    (tmp_path / "report.json").write_bytes(report)
    src = tree(
        tmp_path / "data", {"top.txt": b"top", "sub/deeper/x.bin": os.urandom(5000), ".hidden": b"dot"}
    )
    tree(tmp_path / "logs", {"app.log": b"1", "old/app.log": b"2", "old/app.txt": b"no", "x/z.log": b"3"})
    run = steps(
        tmp_path,
        {
            "id": "one",
            "gcs_upload": {
                "src": "report.json",
                "bucket": bucket,
                "object": "daily/r.json",
                "metadata": {"k": "v"},
            },
        },
        {"id": "folder", "gcs_upload": {"src": str(src), "bucket": bucket, "prefix": "backup/2024"}},
        {
            "id": "glob",
            "gcs_upload": {"src": "logs/**/*.log", "bucket": bucket, "prefix": "l/", "exclude": "x/**"},
        },
        env=no_google(emulator.url),
    )
    expected = {"daily/r.json": report, "l/app.log": b"1", "l/old/app.log": b"2"}
    for folder, _, names in os.walk(src):  # the folder's names come from walking it here
        for name in names:
            path = Path(folder, name)
            expected["backup/2024/" + path.relative_to(src).as_posix()] = path.read_bytes()
    assert objects(emulator, bucket) == expected
    one = result_of(run, "one")
    blob = emulator.client().bucket(bucket).get_blob("daily/r.json")
    assert blob.md5_hash == md5_b64(report) and blob.content_type == "application/json"
    assert blob.metadata == {"k": "v"}
    assert one["uploaded"] == [{"name": "daily/r.json", "size": len(report), "generation": blob.generation}]
    assert one["location"] == f"gs://{bucket}/daily/r.json" and run.step("one")["status"] == "changed"
    assert result_of(run, "folder")["bytes"] == sum(
        len(v) for k, v in expected.items() if k.startswith("backup/")
    )


def test_big_files_resume_in_chunks_and_unchanged_ones_are_skipped(tmp_path, emulator, bucket):
    big = os.urandom(20 * MiB + 5)  # a resumable upload of two chunks
    src = tree(tmp_path / "d", {"a.txt": b"alpha", "b.txt": b"bravo", "big.bin": big})
    args = {"src": str(src), "bucket": bucket, "max_concurrency": 3}
    run = steps(
        tmp_path,
        {"id": "first", "gcs_upload": args},
        {"id": "again", "gcs_upload": args},
        {"write": {"path": str(src / "b.txt"), "data": "BRAVO"}},  # same size, other content
        {"id": "third", "gcs_upload": args},
        {"id": "forced", "gcs_upload": {**args, "skip_unchanged": False}},
        env=no_google(emulator.url),
    )
    assert sorted(u["name"] for u in result_of(run, "first")["uploaded"]) == ["a.txt", "b.txt", "big.bin"]
    assert run.step("again")["status"] == "ok" and result_of(run, "again")["unchanged"] == 3
    third = result_of(run, "third")
    assert [u["name"] for u in third["uploaded"]] == ["b.txt"] and third["unchanged"] == 2
    assert len(result_of(run, "forced")["uploaded"]) == 3
    landed = objects(emulator, bucket)
    assert landed["big.bin"] == big and landed["b.txt"] == b"BRAVO"
    assert emulator.client().bucket(bucket).get_blob("big.bin").md5_hash == md5_b64(big)


def test_dry_run_writes_nothing_and_tells_what_would_go(tmp_path, emulator, bucket):
    src = tree(tmp_path / "d", {"a.txt": b"alpha", "b.txt": b"bravo"})
    args = {"src": str(src), "bucket": bucket}
    run = steps(
        tmp_path,
        {"id": "before", "gcs_upload": args},
        {"id": "real", "gcs_upload": args, "dry_run": "run"},
        {"write": {"path": str(src / "a.txt"), "data": "ALPHA"}, "dry_run": "run"},
        {"id": "after", "gcs_upload": args},
        flags=("--dry-run",),
        env=no_google(emulator.url),
    )
    before, after = run.step("before")["result"], run.step("after")["result"]
    assert [w["name"] for w in before["would_upload"]] == ["a.txt", "b.txt"] and before["changed"] is True
    assert [w["name"] for w in after["would_upload"]] == ["a.txt"] and after["would_skip"] == ["b.txt"]
    assert objects(emulator, bucket) == {"a.txt": b"alpha", "b.txt": b"bravo"}  # the real step's only


def test_failures_are_one_line_and_say_what_to_do(tmp_path, emulator, bucket):
    (tmp_path / "a.txt").write_bytes(b"x")
    closed = f"http://127.0.0.1:{free_port()}"
    cases = {
        "no_bucket": ({"bucket": "no-such-bucket"}, {}),
        "refused": ({"bucket": bucket}, {"STORAGE_EMULATOR_HOST": closed}),
        "bad_key_file": (
            {"bucket": bucket},
            {"STORAGE_EMULATOR_HOST": "", "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")},
        ),
        "no_credentials": ({"bucket": bucket}, {"STORAGE_EMULATOR_HOST": ""}),
    }
    run = steps(
        tmp_path,
        *(
            {"id": key, "gcs_upload": {"src": "a.txt", **args}, "env": env, "continue_on_error": True}
            for key, (args, env) in cases.items()
        ),
        env=no_google(emulator.url),
    )
    errors = {key: one_line_error(run.step(key)) for key in cases}
    assert "'no-such-bucket' does not exist" in errors["no_bucket"] and "create it" in errors["no_bucket"]
    assert "cannot reach" in errors["refused"] and "connection refused" in errors["refused"]
    assert "STORAGE_EMULATOR_HOST" in errors["refused"]
    assert "missing.json" in errors["bad_key_file"] and "not usable" in errors["bad_key_file"]
    assert "no Google Cloud credentials" in errors["no_credentials"]
    assert "gcloud auth application-default login" in errors["no_credentials"]
    assert objects(emulator, bucket) == {}


def test_a_missing_sdk_names_the_extra_to_install(tmp_path):
    # An empty regular package "google" first on the path hides the installed SDK (a namespace
    # package) from that process: importing google.cloud.storage really fails there.
    shadow = tmp_path / "shadow" / "google"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (tmp_path / "a.txt").write_bytes(b"x")
    run = steps(
        tmp_path,
        {"id": "up", "gcs_upload": {"src": "a.txt", "bucket": "abc"}},
        env={**no_google("http://127.0.0.1:9"), "PYTHONPATH": str(tmp_path / "shadow")},
    )
    error = one_line_error(run.step("up"))
    assert "pip install 'runbook[gcp]'" in error and "google-cloud-storage" in error


def test_the_backup_example_works_as_shipped(tmp_path, emulator, bucket):
    src = tree(tmp_path / "app", {"a.txt": b"alpha", "sub/b.txt": b"bravo", "skip.tmp": b"no"})
    book = (REPO / "playbooks" / "gcs-backup.yml").read_text()
    run = play(tmp_path, book, "-e", f"src={src}", "-e", f"bucket={bucket}", env=no_google(emulator.url))
    assert run.finished()["exit_code"] == 0, run.stderr
    landed = objects(emulator, bucket)
    assert sorted(name.split("/", 2)[2] for name in landed) == ["a.txt", "sub/b.txt"]
    assert {name.split("/")[0] for name in landed} == {"app"}  # under the folder's name and the day
