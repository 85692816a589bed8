"""The ``azure_blob_upload`` handler (SPEC §5b), against a real Azure Blob Storage emulator.

Every test runs a real ``runbook play --output json`` process against Azurite
(``tests/azurite.py``) on 127.0.0.1, started once for this module; what landed is read
back with the Azure SDK from the same emulator. Each test has its own container. The
missing-extra test runs runbook with a ``PYTHONPATH`` folder holding an empty ``azure``
package, which hides the installed SDK from that process: the import really fails.
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

from .azurite import ACCOUNT, KEY, Azurite, free_port
from .conftest import REPO
from .playing import Play, one_line_error, play

if not os.environ.get("CI"):  # CI installs the SDK: there its absence fails the tests
    pytest.importorskip("azure.storage.blob")

MiB = 1024 * 1024
NO_AZURE_ENV = {
    "AZURE_STORAGE_CONNECTION_STRING": "",
    "AZURE_STORAGE_ACCOUNT": "",
    "AZURE_STORAGE_KEY": "",
    "AZURE_STORAGE_SAS_TOKEN": "",
}


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    emulator = Azurite()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def container(azurite: Azurite) -> str:
    name = f"rb-{uuid.uuid4().hex[:16]}"
    azurite.client().create_container(name)
    return name


def upload(
    tmp_path: Path, args: dict[str, Any], *flags: str, env: dict[str, str] | None = None, **step: Any
) -> Play:
    """Run one ``azure_blob_upload`` step (id ``up``); JSON is YAML, so paths are quoted safely."""
    book = {"name": "azure-tests", "steps": [{"id": "up", "azure_blob_upload": args, **step}]}
    return play(tmp_path, json.dumps(book), *flags, env={**NO_AZURE_ENV, **(env or {})})


def result(run: Play) -> dict[str, Any]:
    return result_of(run, "up")


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


def blobs(azurite: Azurite, container: str) -> dict[str, bytes]:
    """Every blob of the container with its bytes, read back from the emulator."""
    client = azurite.client().get_container_client(container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def props(azurite: Azurite, container: str, name: str) -> Any:
    return azurite.client().get_blob_client(container, name).get_blob_properties()


# -- sources and names --------------------------------------------------------------------------


def test_a_single_file_lands_at_its_name_with_its_md5_and_type(tmp_path, azurite, container):
    data = os.urandom(70_000)
    (tmp_path / "report.json").write_bytes(data)
    args = {"src": "report.json", "container": container, "blob": "daily/r.json"}
    run = upload(tmp_path, {**args, "connection_string": azurite.connection_string})
    got = result(run)
    assert blobs(azurite, container) == {"daily/r.json": data}
    blob = props(azurite, container, "daily/r.json")
    assert bytes(blob.content_settings.content_md5) == hashlib.md5(data).digest()
    assert blob.content_settings.content_type == "application/json"
    assert got["uploaded"] == [{"name": "daily/r.json", "size": len(data), "etag": blob.etag.strip('"')}]
    assert got["bytes"] == len(data) and got["files"] == 1 and got["unchanged"] == 0
    assert run.step("up")["status"] == "changed"
    assert got["location"] == f"{azurite.account_url}/{container}/daily/r.json"


def test_a_folder_lands_under_the_prefix_by_relative_path(tmp_path, azurite, container):
    files = {
        "top.txt": b"top",
        "sub/deeper/x.bin": os.urandom(5000),
        "sub/y.csv": b"a,b\n",
        ".hidden": b"dot files too",
        "empty.dat": b"",
    }
    src = tree(tmp_path / "data", files)
    args = {
        "src": str(src),
        "container": container,
        "prefix": "backup/2024",
        "metadata": {"origin": "runbook"},
        "tier": "Cool",
    }
    got = result(upload(tmp_path, args, env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}))
    expected = {}
    for folder, _, names in os.walk(src):  # the expected names come from walking here
        for name in names:
            path = Path(folder, name)
            expected["backup/2024/" + path.relative_to(src).as_posix()] = path.read_bytes()
    assert blobs(azurite, container) == expected
    assert sorted(u["name"] for u in got["uploaded"]) == sorted(expected)
    assert got["bytes"] == sum(len(v) for v in expected.values())
    top = props(azurite, container, "backup/2024/top.txt")
    assert top.metadata == {"origin": "runbook"} and top.blob_tier == "Cool"


def test_a_glob_uploads_its_matches_by_path_below_its_fixed_part(tmp_path, azurite, container):
    tree(
        tmp_path / "logs",
        {"app.log": b"1", "old/app.log": b"2", "old/app.txt": b"no", "x/y/z.log": b"3", ".hidden.log": b"no"},
    )
    args = {"src": "logs/**/*.log", "container": container, "prefix": "l/", "exclude": "x/**"}
    result(upload(tmp_path, {**args, "connection_string": azurite.connection_string}))
    assert blobs(azurite, container) == {"l/app.log": b"1", "l/old/app.log": b"2"}


def test_a_big_file_goes_in_blocks_with_its_md5_kept(tmp_path, azurite, container):
    data = os.urandom(20 * MiB + 123)  # more than two 8 MiB blocks
    (tmp_path / "big.bin").write_bytes(data)
    args = {"src": "big.bin", "container": container, "max_concurrency": 3}
    got = result(upload(tmp_path, {**args, "connection_string": azurite.connection_string}))
    assert blobs(azurite, container) == {"big.bin": data}
    block_list = azurite.client().get_blob_client(container, "big.bin").get_block_list()[0]
    assert len(block_list) >= 3  # it went in blocks, not in one request
    assert (
        bytes(props(azurite, container, "big.bin").content_settings.content_md5) == hashlib.md5(data).digest()
    )
    assert got["bytes"] == len(data)


# -- unchanged blobs ----------------------------------------------------------------------------


def steps(
    tmp_path: Path, *entries: dict[str, Any], flags: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Play:
    """Run a playbook of these steps in one runbook process (each run of the SDK costs a second)."""
    book = {"name": "azure-steps", "steps": list(entries)}
    return play(tmp_path, json.dumps(book), *flags, env={**NO_AZURE_ENV, **(env or {})})


def test_unchanged_files_are_skipped_and_a_changed_one_is_sent(tmp_path, azurite, container):
    src = tree(tmp_path / "d", {"a.txt": b"alpha", "b.txt": b"bravo", "big.bin": os.urandom(9 * MiB)})
    args = {"src": str(src), "container": container, "connection_string": azurite.connection_string}
    run = steps(
        tmp_path,
        {"id": "first", "azure_blob_upload": args},
        {"id": "again", "azure_blob_upload": args},
        {"write": {"path": str(src / "b.txt"), "data": "BRAVO"}},  # same size, other content
        {"id": "third", "azure_blob_upload": args},
        {"id": "forced", "azure_blob_upload": {**args, "skip_unchanged": False}},
    )
    assert len(result_of(run, "first")["uploaded"]) == 3
    assert run.step("again")["status"] == "ok"
    assert result_of(run, "again")["unchanged"] == 3 and result_of(run, "again")["uploaded"] == []
    third = result_of(run, "third")
    assert [u["name"] for u in third["uploaded"]] == ["b.txt"] and third["unchanged"] == 2
    assert len(result_of(run, "forced")["uploaded"]) == 3
    assert blobs(azurite, container)["b.txt"] == b"BRAVO"


def test_a_blob_without_md5_is_uploaded_again(tmp_path, azurite, container):
    data = os.urandom(MiB)
    (tmp_path / "f.bin").write_bytes(data)
    # Another tool's block upload (no Content-MD5 kept): runbook cannot tell it is the same.
    client = azurite.client().get_blob_client(container, "f.bin")
    client.stage_block("AAAA", data)
    client.commit_block_list(["AAAA"])
    assert props(azurite, container, "f.bin").content_settings.content_md5 is None
    args = {"src": "f.bin", "container": container, "connection_string": azurite.connection_string}
    run = steps(
        tmp_path, {"id": "first", "azure_blob_upload": args}, {"id": "again", "azure_blob_upload": args}
    )
    assert [u["name"] for u in result_of(run, "first")["uploaded"]] == ["f.bin"]
    assert result_of(run, "again")["unchanged"] == 1


def test_dry_run_writes_nothing_and_tells_what_would_go(tmp_path, azurite, container):
    src = tree(tmp_path / "d", {"a.txt": b"alpha", "b.txt": b"bravo"})
    args = {"src": str(src), "container": container, "connection_string": azurite.connection_string}
    run = steps(
        tmp_path,
        {"id": "before", "azure_blob_upload": args},
        {"id": "real", "azure_blob_upload": args, "dry_run": "run"},
        {"write": {"path": str(src / "a.txt"), "data": "ALPHA"}, "dry_run": "run"},
        {"id": "after", "azure_blob_upload": args},
        flags=("--dry-run",),
    )
    before, after = run.step("before")["result"], run.step("after")["result"]
    assert [w["name"] for w in before["would_upload"]] == ["a.txt", "b.txt"] and before["changed"] is True
    assert [w["name"] for w in after["would_upload"]] == ["a.txt"] and after["would_skip"] == ["b.txt"]
    assert blobs(azurite, container) == {"a.txt": b"alpha", "b.txt": b"bravo"}  # the real step's only


# -- credentials --------------------------------------------------------------------------------


def test_account_url_with_a_key_or_a_sas_token_from_the_env(tmp_path, azurite, container):
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(
        ACCOUNT,
        container,
        account_key=KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True, create=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    (tmp_path / "k.txt").write_bytes(b"by key")
    (tmp_path / "s.txt").write_bytes(b"by sas")
    where = {"container": container, "account_url": azurite.account_url}
    run = steps(
        tmp_path,
        {"id": "key", "azure_blob_upload": {"src": "k.txt", **where}, "env": {"AZURE_STORAGE_KEY": KEY}},
        {"id": "sas", "azure_blob_upload": {"src": "s.txt", **where}},
        env={"AZURE_STORAGE_SAS_TOKEN": sas},
    )
    result_of(run, "key")
    assert "sig=" not in json.dumps(result_of(run, "sas"))
    assert blobs(azurite, container) == {"k.txt": b"by key", "s.txt": b"by sas"}


# -- failures -----------------------------------------------------------------------------------


def test_failures_are_one_line_and_say_what_to_do(tmp_path, azurite, container):
    (tmp_path / "a.txt").write_bytes(b"x")
    wrong = base64.b64encode(b"not the key" * 6).decode()
    closed = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"
    refused = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={closed};"
    cases = {
        "no_container": {"container": "no-such-container", "connection_string": azurite.connection_string},
        "wrong_key": {
            "container": container,
            "connection_string": azurite.connection_string.replace(KEY, wrong),
        },
        "no_credentials": {"container": container},
        "refused": {"container": container, "connection_string": refused},
        "malformed": {"container": container, "connection_string": "nonsense"},
    }
    run = steps(
        tmp_path,
        *(
            {"id": key, "azure_blob_upload": {"src": "a.txt", **args}, "continue_on_error": True}
            for key, args in cases.items()
        ),
    )
    errors = {key: one_line_error(run.step(key)) for key in cases}
    assert (
        "'no-such-container' does not exist" in errors["no_container"]
        and "create it" in errors["no_container"]
    )
    assert "refused the credentials" in errors["wrong_key"]
    assert "no Azure Storage credentials" in errors["no_credentials"]
    assert "AZURE_STORAGE_CONNECTION_STRING" in errors["no_credentials"]
    assert "cannot reach Azure Storage" in errors["refused"] and "connection refused" in errors["refused"]
    assert "connection_string is not usable" in errors["malformed"]
    assert wrong not in run.stdout + run.stderr and KEY not in json.dumps(errors)
    assert blobs(azurite, container) == {}


def test_a_missing_sdk_names_the_extra_to_install(tmp_path):
    # An empty regular package "azure" first on the path hides the installed SDK (a namespace
    # package) from that process: importing azure.storage.blob really fails there.
    shadow = tmp_path / "shadow" / "azure"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (tmp_path / "a.txt").write_bytes(b"x")
    run = upload(
        tmp_path,
        {"src": "a.txt", "container": "abc", "connection_string": "UseDevelopmentStorage=true"},
        env={"PYTHONPATH": str(tmp_path / "shadow")},
    )
    error = one_line_error(run.step("up"))
    assert "pip install 'runbook[azure]'" in error and "azure-storage-blob" in error


def test_the_backup_example_works_as_shipped(tmp_path, azurite, container):
    src = tree(tmp_path / "app", {"a.txt": b"alpha", "sub/b.txt": b"bravo", "skip.tmp": b"no"})
    book = (REPO / "playbooks" / "azure-backup.yml").read_text()
    env = {**NO_AZURE_ENV, "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    run = play(tmp_path, book, "-e", f"src={src}", "-e", f"container={container}", env=env)
    assert run.finished()["exit_code"] == 0, run.stderr
    landed = blobs(azurite, container)
    assert sorted(name.split("/", 2)[2] for name in landed) == ["a.txt", "sub/b.txt"]
    assert {name.split("/")[0] for name in landed} == {"app"}  # under the folder's name and the day
    assert props(azurite, container, next(iter(landed))).blob_tier == "Cool"
