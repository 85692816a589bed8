"""The ``hash`` handler (SPEC §5 row hash, §8 hash details), on real files.

Every test runs real ``runbook play --output json`` processes on files under ``tmp_path``
and compares with the coreutils tools run as subprocesses: ``md5sum``, ``sha1sum``,
``sha256sum``, ``sha512sum``, ``b2sum`` (BLAKE2b-512, Python's ``blake2b`` default),
``openssl dgst -sha3-256``, and ``sha256sum -c``. A folder's combined digest must be the
tool's digest of the tool's own listing of the folder (``find -type f | sort | xargs
sha256sum``), which is also the file ``write`` produces.

"Permission denied" is produced for real by running runbook as root without
CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (``setpriv``); ENOSPC by writing into a full tmpfs
mounted in a private mount namespace (``unshare``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .playing import Play, one_line_error, parse_events, play, restricted_prefix

MiB = 1024 * 1024
TOOLS = {"md5": "md5sum", "sha1": "sha1sum", "sha256": "sha256sum", "sha512": "sha512sum", "blake2b": "b2sum"}


# -- helpers ------------------------------------------------------------------------------------


def book(steps: list[dict[str, Any]]) -> str:
    return json.dumps({"name": "hash-tests", "steps": steps}, ensure_ascii=False)


def run_steps(tmp_path: Path, steps: list[dict[str, Any]], *args: str, cwd: Path | None = None) -> Play:
    return play(tmp_path, book(steps), *args, cwd=cwd)


def tool_digest(algorithm: str, path: Path) -> str:
    """The digest the plain tool prints for one file."""
    if algorithm == "sha3_256":
        if shutil.which("openssl") is None:
            pytest.skip("openssl is not installed: no plain tool for sha3_256")
        out = subprocess.run(
            ["openssl", "dgst", "-sha3-256", "-r", str(path)], capture_output=True, text=True, check=True
        ).stdout
    else:
        out = subprocess.run(
            [TOOLS[algorithm], "--", str(path)], capture_output=True, text=True, check=True
        ).stdout
    return out.split()[0].lstrip("\\")


def tool_listing(tool: str, folder: Path, *find_args: str) -> bytes:
    """The tool's sums listing of the files under ``folder`` (names relative to it, sorted
    bytewise), as ``find . -type f ... | sort | xargs TOOL`` run in ``folder`` prints it."""
    script = 'tool=$1; shift; find . -type f "$@" -printf "%P\\0" | sort -z | xargs -0 -r "$tool" --'
    return subprocess.run(
        ["sh", "-c", script, "sh", tool, *find_args],
        cwd=folder,
        capture_output=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout


def tool_of_bytes(tool: str, data: bytes) -> str:
    return subprocess.run([tool], input=data, capture_output=True, check=True).stdout.split()[0].decode()


def listing_map(listing: bytes, folder: Path) -> dict[str, str]:
    """{absolute path: digest} from a sums listing without escaped names."""
    found = {}
    for line in listing.decode().splitlines():
        digest, name = line.split("  ", 1)
        found[str(folder / name)] = digest
    return found


def make_data(folder: Path) -> None:
    """Files worth hashing: empty, spaces, unicode, a leading dash, a dot file, a dot
    folder, a file over several 1 MiB reads, nested folders, an empty folder, a link."""
    rng = random.Random(99)
    files = {
        "a.txt": b"alpha\n",
        "empty.txt": b"",
        "with space.txt": b"spaces\n",
        "ünïcødé ñame.txt": "ünï\n".encode(),
        "-dash.txt": b"dash\n",
        ".hidden": b"hidden\n",
        "sub/b.bin": rng.randbytes(2 * MiB + 12_345),
        "sub/deeper/c.txt": b"c\n" * 1000,
        "sub/.dotdir/d.txt": b"d\n",
    }
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    (folder / "emptydir").mkdir()
    os.symlink("a.txt", folder / "link.txt")


def temporaries(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp"))


# -- digests ------------------------------------------------------------------------------------


def test_one_file_digest_matches_the_tool_for_every_algorithm(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    big = data / "payload with space ü.bin"
    big.write_bytes(random.Random(5).randbytes(3 * MiB + 777))  # several 1 MiB reads, then a tail
    (data / "empty.txt").write_bytes(b"")
    os.symlink(big.name, data / "link.bin")
    algorithms = [*TOOLS, "sha3_256"]
    steps = [{"id": a, "hash": {"path": str(big), "algorithm": a}} for a in algorithms]
    steps += [
        {"id": "default", "hash": str(big)},  # shorthand, sha256 by default
        {"id": "empty", "hash": {"path": "data/empty.txt"}},
        {"id": "through_link", "hash": {"path": "data/link.bin"}},
    ]
    run = run_steps(tmp_path, steps)
    assert run.returncode == 0, run.stderr
    for algorithm in algorithms:
        result = run.step(algorithm)["result"]
        assert result["digest"] == tool_digest(algorithm, big), algorithm
        assert result["algorithm"] == algorithm
        assert result["size"] == big.stat().st_size
        assert result["files"] == {str(big): result["digest"]}
        assert run.step(algorithm)["status"] == "ok"
    assert run.step("default")["result"]["digest"] == tool_digest("sha256", big)
    assert run.step("default")["result"]["algorithm"] == "sha256"
    empty = run.step("empty")["result"]
    assert (empty["digest"], empty["size"]) == (tool_digest("sha256", data / "empty.txt"), 0)
    assert run.step("through_link")["result"]["digest"] == tool_digest("sha256", data / "link.bin")


def test_folder_digests_match_the_tools_listing(tmp_path):
    data = tmp_path / "data"
    make_data(data)
    run = run_steps(tmp_path, [{"id": a, "hash": {"path": str(data), "algorithm": a}} for a in TOOLS])
    assert run.returncode == 0, run.stderr
    for algorithm, tool in TOOLS.items():
        listing = tool_listing(tool, data)
        result = run.step(algorithm)["result"]
        # Every regular file, dot files and dot folders included, links not (find -type f).
        assert result["files"] == listing_map(listing, data), algorithm
        assert result["count"] == 9
        assert result["digest"] == tool_of_bytes(tool, listing), algorithm
        assert result["size"] == sum(os.path.getsize(p) for p in result["files"])
    assert str(data / ".hidden") in run.step("sha256")["result"]["files"]
    assert str(data / "link.txt") not in run.step("sha256")["result"]["files"]


def test_write_gives_a_file_sha256sum_c_accepts_and_whose_digest_is_the_folder_digest(tmp_path):
    data = tmp_path / "data"
    make_data(data)
    sums = data / "SHA256SUMS"
    steps = [
        {"id": "digest", "hash": {"path": str(data)}},
        {"id": "write", "hash": {"path": str(data), "write": str(sums)}},
    ]
    other = tmp_path / "other"
    make_data(other)
    md5_step = {"path": str(other), "algorithm": "md5", "write": str(other / "sub" / "MD5SUMS")}
    first = run_steps(tmp_path, [*steps, {"id": "md5", "hash": md5_step}])
    assert first.returncode == 0, first.stderr
    assert first.step("write")["status"] == "changed"
    # Byte for byte what sha256sum writes for the same files (the sums file not listing itself).
    assert sums.read_bytes() == tool_listing("sha256sum", data, "-not", "-name", "SHA256SUMS")
    check = subprocess.run(
        ["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=data, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK\n") == 9
    assert tool_of_bytes("sha256sum", sums.read_bytes()) == first.step("digest")["result"]["digest"]
    assert first.step("write")["result"]["digest"] == first.step("digest")["result"]["digest"]
    # MD5SUMS sits in sub/: its names are relative to sub/, and md5sum -c there agrees.
    md5 = subprocess.run(["md5sum", "-c", "MD5SUMS"], cwd=other / "sub", capture_output=True, text=True)
    assert md5.returncode == 0, md5.stdout + md5.stderr
    assert "../a.txt: OK" in md5.stdout and md5.stdout.count(": OK\n") == 9
    assert temporaries(data) == [] and temporaries(other / "sub") == []

    # Unchanged files: the sums file is left alone (same inode, changed: false).
    inode = sums.stat().st_ino
    second = run_steps(tmp_path, steps)
    assert second.returncode == 0, second.stderr
    assert second.step("write")["status"] == "ok" and second.step("write")["result"]["changed"] is False
    assert sums.stat().st_ino == inode
    # A changed file: a new sums file is renamed into place, not rewritten in it.
    (data / "a.txt").write_bytes(b"beta\n")
    third = run_steps(tmp_path, steps[1:2])
    assert third.step("write")["status"] == "changed"
    assert sums.stat().st_ino != inode
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=data, capture_output=True).returncode == 0
    assert temporaries(data) == []


def test_glob_path_and_a_sums_file_in_another_folder(tmp_path):
    data = tmp_path / "data"
    make_data(data)
    (tmp_path / "sums").mkdir()
    run = run_steps(
        tmp_path,
        [
            {"id": "txt", "hash": {"path": "data/**/*.txt"}},
            {"id": "top", "hash": {"path": "data/*.txt", "write": "sums/SHA256SUMS"}},
        ],
    )
    assert run.returncode == 0, run.stderr
    visible_txt = ("-name", "*.txt", "-not", "-path", "*/.*")
    listing = tool_listing("sha256sum", data, *visible_txt)
    result = run.step("txt")["result"]
    assert result["files"] == listing_map(listing, data)
    assert result["count"] == 6
    assert result["digest"] == tool_of_bytes("sha256sum", listing)  # names relative to data/
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "sums", capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "../data/with space.txt: OK" in check.stdout
    assert "../data/sub" not in check.stdout


def test_names_sha256sum_escapes_are_written_and_read_back_like_sha256sum(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["back\\slash.txt", "new\nline.txt", "plain name.txt"]
    for index, name in enumerate(names):
        (folder / name).write_text(f"content {index}\n")
    run = run_steps(
        tmp_path,
        [
            {"id": "digest", "hash": {"path": str(folder)}},
            {"id": "write", "hash": {"path": str(folder), "write": str(folder / "SHA256SUMS")}},
            {"id": "verify", "hash": {"verify": str(folder / "SHA256SUMS")}},
        ],
    )
    assert run.returncode == 0, run.stderr
    expected = subprocess.run(
        ["sha256sum", "--", *sorted(names)], cwd=folder, capture_output=True, check=True
    ).stdout
    assert expected.count(b"\n") == 3 and expected.startswith(b"\\")  # the tool does escape
    assert (folder / "SHA256SUMS").read_bytes() == expected
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True).returncode == 0
    assert run.step("digest")["result"]["digest"] == tool_of_bytes("sha256sum", expected)
    verified = run.step("verify")["result"]["verified"]
    assert sorted(verified) == sorted(str(folder / n) for n in names)


# -- expected and verify ------------------------------------------------------------------------


def test_expected_digest_passes_or_fails_showing_both_digests(tmp_path):
    target = tmp_path / "release.tar"
    target.write_bytes(b"release bytes\n" * 100)
    actual = tool_digest("sha256", target)
    wrong = tool_of_bytes("sha256sum", b"something else")
    run = run_steps(
        tmp_path,
        [
            {"id": "match", "hash": {"path": "release.tar", "expected": actual}},
            {"id": "upper", "hash": {"path": "release.tar", "expected": f" {actual.upper()} "}},
            {
                "id": "md5",
                "hash": {"path": "release.tar", "algorithm": "md5", "expected": tool_digest("md5", target)},
            },
            {"id": "mismatch", "hash": {"path": "release.tar", "expected": wrong}},
            {"id": "never_runs", "hash": {"path": "release.tar"}},
        ],
    )
    assert run.returncode == 1
    assert run.finished()["exit_code"] == 1
    for key in ("match", "upper", "md5"):
        assert run.step(key)["status"] == "ok", run.step(key)
    error = one_line_error(run.step("mismatch"))
    assert wrong in error and actual in error and "mismatch" in error
    assert "release.tar" in error
    assert not [e for e in run.events if e["event"] == "step_started" and e["step"]["id"] == "never_runs"]


def sha256sum_check(folder: Path, sums: str) -> tuple[set[str], set[str]]:
    """(mismatched, missing) names as ``sha256sum -c`` run in ``folder`` reports them."""
    out = subprocess.run(["sha256sum", "-c", sums], cwd=folder, capture_output=True, text=True).stdout
    mismatched = {line[: -len(": FAILED")] for line in out.splitlines() if line.endswith(": FAILED")}
    missing = {
        line[: -len(": FAILED open or read")] for line in out.splitlines() if line.endswith("open or read")
    }
    return mismatched, missing


def test_verify_reports_every_mismatched_and_missing_file_like_sha256sum_c(tmp_path):
    folder = tmp_path / "release"
    names = ["a b.txt", "ünï.txt", "sub/c d.txt", "gone.txt", "ok.txt"]
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"{name} content\n")
    with open(folder / "SHA256SUMS", "wb") as handle:
        subprocess.run(["sha256sum", "--", *names], cwd=folder, stdout=handle, check=True)
    elsewhere = tmp_path / "elsewhere"  # names resolve against the sums file's folder, not cwd
    elsewhere.mkdir()
    step = [{"id": "v", "hash": {"verify": str(folder / "SHA256SUMS")}}]
    good = run_steps(tmp_path, step, cwd=elsewhere)
    assert good.returncode == 0, good.stderr
    result = good.step("v")["result"]
    assert sorted(result["verified"]) == sorted(str(folder / n) for n in names)
    assert (result["mismatched"], result["missing"]) == ([], [])

    (folder / "a b.txt").write_text("A b.txt content\n")  # same size, different bytes
    (folder / "sub" / "c d.txt").write_text("changed\n")
    (folder / "gone.txt").unlink()
    mismatched, missing = sha256sum_check(folder, "SHA256SUMS")
    assert (mismatched, missing) == ({"a b.txt", "sub/c d.txt"}, {"gone.txt"})
    bad = run_steps(tmp_path, step, cwd=elsewhere)
    assert bad.returncode == 1
    error = one_line_error(bad.step("v"))
    for name in sorted(mismatched):
        assert f"{name}: FAILED" in error, error
    for name in missing:
        assert f"{name}: missing" in error, error
    assert str(folder / "SHA256SUMS") in error
    result = bad.step("v")["result"]
    assert sorted(result["mismatched"]) == sorted(str(folder / n) for n in mismatched)
    assert result["missing"] == [str(folder / n) for n in missing]
    assert sorted(result["verified"]) == sorted([str(folder / "ünï.txt"), str(folder / "ok.txt")])


def test_verify_reads_binary_markers_and_other_algorithms(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("one.bin", "two words.bin"):
        (folder / name).write_bytes(name.encode() * 1000)
    for tool, sums in (("sha256sum", "BIN256SUMS"), ("md5sum", "MD5SUMS"), ("b2sum", "B2SUMS")):
        args = ["-b"] if tool == "sha256sum" else []
        with open(folder / sums, "wb") as handle:
            subprocess.run([tool, *args, "one.bin", "two words.bin"], cwd=folder, stdout=handle, check=True)
    assert b" *one.bin" in (folder / "BIN256SUMS").read_bytes()
    # Made on Windows: CRLF line ends, which sha256sum -c accepts too.
    crlf = (folder / "BIN256SUMS").read_bytes().replace(b" *", b"  ").replace(b"\n", b"\r\n")
    (folder / "CRLF256SUMS").write_bytes(crlf)
    assert subprocess.run(["sha256sum", "-c", "CRLF256SUMS"], cwd=folder, capture_output=True).returncode == 0
    run = run_steps(
        tmp_path,
        [
            {"id": "binary", "hash": {"verify": "f/BIN256SUMS"}},
            {"id": "crlf", "hash": {"verify": "f/CRLF256SUMS"}},
            {"id": "md5", "hash": {"verify": "f/MD5SUMS", "algorithm": "md5"}},
            {"id": "b2", "hash": {"verify": "f/B2SUMS", "algorithm": "blake2b"}},
            {"id": "wrong_algorithm", "hash": {"verify": "f/MD5SUMS"}},
        ],
    )
    assert run.returncode == 1
    for key in ("binary", "crlf", "md5", "b2"):
        assert run.step(key)["status"] == "ok", run.step(key)
        assert len(run.step(key)["result"]["verified"]) == 2
    error = one_line_error(run.step("wrong_algorithm"))
    assert "algorithm: md5" in error and "MD5SUMS" in error


# -- errors -------------------------------------------------------------------------------------


def test_missing_things_fail_with_one_line_naming_them(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "BAD").write_text("not a sums line\n")
    soft = {"continue_on_error": True}
    run = run_steps(
        tmp_path,
        [
            {"id": "file", "hash": {"path": "nope.bin"}, **soft},
            {"id": "sums", "hash": {"verify": "d/NOSUMS"}, **soft},
            {"id": "glob", "hash": {"path": "d/*.bin"}, **soft},
            {"id": "bad_sums_line", "hash": {"verify": "d/BAD"}, **soft},
            {"id": "last", "hash": {"path": "d/also-missing.bin"}},
        ],
    )
    assert run.returncode == 1, run.stderr
    expected = {
        "file": (str(tmp_path / "nope.bin"), "no such file"),
        "sums": (str(tmp_path / "d" / "NOSUMS"), "no such file"),
        "glob": ("d/*.bin", "no file matches"),
        "bad_sums_line": (f"{tmp_path / 'd' / 'BAD'}:1", "not a sums line"),
        "last": (str(tmp_path / "d" / "also-missing.bin"), "no such file"),
    }
    for key, (path, words) in expected.items():
        error = one_line_error(run.step(key))
        assert path in error and words in error, (key, error)


def test_permission_denied_names_the_path(tmp_path):
    prefix = restricted_prefix(tmp_path)
    locked = tmp_path / "locked.bin"
    locked.write_bytes(b"secret")
    (tmp_path / "ok.bin").write_bytes(b"ok")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    locked.chmod(0)
    readonly.chmod(0o555)
    try:
        run = play(
            tmp_path,
            book(
                [
                    {"id": "read", "hash": {"path": "locked.bin"}, "continue_on_error": True},
                    {"id": "write", "hash": {"path": "ok.bin", "write": "readonly/SHA256SUMS"}},
                ]
            ),
            prefix=prefix,
        )
    finally:
        locked.chmod(0o600)
        readonly.chmod(0o755)
    assert run.returncode == 1, run.stderr
    read = one_line_error(run.step("read"))
    assert str(locked) in read and "permission denied" in read
    write = one_line_error(run.step("write"))
    assert str(readonly / "SHA256SUMS") in write and "permission denied" in write
    assert os.listdir(readonly) == []


def test_unreadable_folder_inside_a_hashed_folder_fails(tmp_path):
    """Regression (failed at f349a50): a folder the walk cannot read is skipped silently, so
    hashing a folder gives a digest that leaves its files out, with status ok (find and
    sha256sum report Permission denied)."""
    prefix = restricted_prefix(tmp_path)
    data = tmp_path / "data"
    (data / "locked").mkdir(parents=True)
    (data / "locked" / "inside.txt").write_text("inside\n")
    (data / "open.txt").write_text("open\n")
    (data / "locked").chmod(0)
    try:
        run = play(tmp_path, book([{"id": "h", "hash": {"path": "data"}}]), prefix=prefix)
    finally:
        (data / "locked").chmod(0o755)
    assert run.returncode == 1, run.stderr
    error = one_line_error(run.step("h"))
    assert str(data / "locked") in error and "permission denied" in error


def test_write_into_a_full_file_system_fails_and_keeps_the_old_sums_file(tmp_path):
    """ENOSPC for real: the sums file is on a tmpfs filled to the last page, mounted in a
    private mount namespace so it disappears with the process."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and unshare; ENOSPC is not mocked")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    (tmp_path / "a.txt").write_text("a\n")
    old = tmp_path / "OLDSUMS"
    old.write_text(f"{'0' * 64}  a.txt\n")
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        book([{"id": "w", "hash": {"path": "a.txt", "write": str(mount_point / "SHA256SUMS")}}])
    )
    events, listing, after = tmp_path / "events.jsonl", tmp_path / "listing.txt", tmp_path / "after.txt"
    script = """\
mount -t tmpfs -o size=64k tmpfs "$1" || exit 99
cp "$2" "$1/SHA256SUMS" || exit 98
head -c 1048576 /dev/zero > "$1/filler" 2>/dev/null
"$3" -m runner play "$4" --output json > "$5"
rc=$?
ls -A "$1" > "$6"
cp "$1/SHA256SUMS" "$7"
exit $rc
"""
    proc = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        + [str(p) for p in (mount_point, old, sys.executable, playbook, events, listing, after)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    if proc.returncode == 99 or (proc.returncode != 0 and not events.exists()):
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); ENOSPC is not mocked")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    step = Play(1, events.read_text(), proc.stderr, parse_events(events.read_text())).step("w")
    error = one_line_error(step)
    assert "no space left" in error and str(mount_point / "SHA256SUMS") in error
    assert sorted(listing.read_text().split()) == ["SHA256SUMS", "filler"]  # no temporary left
    assert after.read_text() == old.read_text()


# -- dry run ------------------------------------------------------------------------------------


def test_dry_run_says_what_it_would_hash_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    make_data(data)
    sums = data / "SHA256SUMS"
    with open(tmp_path / "release.sums", "wb") as handle:
        subprocess.run(["sha256sum", "a.txt", "empty.txt"], cwd=data, stdout=handle, check=True)
    (tmp_path / "release.sums").rename(data / "RELEASE.SUMS")
    (data / "a.txt").write_bytes(b"changed\n")  # a real run would fail the verify
    before = sorted(os.listdir(data))
    run = run_steps(
        tmp_path,
        [
            {"id": "write", "hash": {"path": str(data), "write": str(sums)}},
            {"id": "verify", "hash": {"verify": str(data / "RELEASE.SUMS")}},
        ],
        "--dry-run",
    )
    assert run.returncode == 0, run.stderr
    assert not sums.exists() and sorted(os.listdir(data)) == before
    sizes = subprocess.run(
        ["find", ".", "-type", "f", "-printf", "%s\\n"],
        cwd=data,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    result = run.step("write")["result"]
    assert (result["count"], result["bytes"]) == (len(sizes), sum(map(int, sizes)))
    assert result["count"] == 10  # the nine data files and RELEASE.SUMS
    assert f"would hash {len(sizes)} files" in result["dry_run"] and "SHA256SUMS" in result["dry_run"]
    assert "would check 2 files" in run.step("verify")["result"]["dry_run"]
