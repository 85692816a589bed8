"""Secrets (SPEC §4): the vault's crypto, its commands, ``secrets:``, and masking everywhere.

The leak test runs a real playbook that echoes a secret, sends it in a header to a real
local HTTP server (which must receive the real value) and fails with it in an error, then
greps the bytes of every output runbook wrote for the plaintext and its encodings.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from runner.masking import MIN_LENGTH, Secrets, encodings
from runner.vault import VaultError, decrypt, encrypt, generate_key, key_from_text

from .conftest import run_cli
from .httpservers import Reply, serving
from .playing import one_line_error, play

pytestmark = pytest.mark.usefixtures("marker")

SECRET = "hunter2-Sup3r/Secret+value"


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault.key"
    proc = cli("vault", "keygen", "--out", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def snippet(name: str, value: str, key_file: Path) -> str:
    proc = cli("vault", "encrypt-string", "--name", name, "--vault-key-file", str(key_file), stdin=value)
    assert proc.returncode == 0, proc.stderr
    assert value not in proc.stdout
    return proc.stdout


# -- crypto ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_text", [generate_key(), "correct horse battery staple"], ids=["key", "passphrase"]
)
def test_round_trip_with_a_key_and_with_a_passphrase(key_text):
    key = key_from_text(key_text, "test")
    for value in ("", "x", SECRET, "ünïcödé\nwith lines\n", "a" * 100_000):
        sealed = encrypt(value, key)
        assert len(value) < 8 or value not in sealed
        assert decrypt(sealed, key) == value
    assert encrypt(SECRET, key) != encrypt(SECRET, key)  # a fresh nonce (and salt) every time


def test_a_wrong_key_is_refused():
    sealed = encrypt(SECRET, key_from_text(generate_key(), "right"))
    with pytest.raises(VaultError, match="wrong key"):
        decrypt(sealed, key_from_text(generate_key(), "other"))
    with pytest.raises(VaultError, match="passphrase"):
        decrypt(sealed, key_from_text("a passphrase", "pass"))


def test_tampered_text_is_refused():
    key = key_from_text(generate_key(), "k")
    header, body = encrypt(SECRET, key).split("\n", 1)
    blob = bytearray(base64.b64decode(body.replace("\n", "")))
    for index in (0, 20, len(blob) - 1):  # the nonce, the ciphertext, the tag
        altered = bytearray(blob)
        altered[index] ^= 0x01
        with pytest.raises(VaultError, match="altered"):
            decrypt(header + "\n" + base64.b64encode(bytes(altered)).decode(), key)
    with pytest.raises(VaultError):
        decrypt(header.replace("key", "scrypt;AAAA") + "\n" + body, key)
    with pytest.raises(VaultError, match="format"):
        decrypt(header.replace(";1;", ";9;") + "\n" + body, key)


# -- commands ----------------------------------------------------------------------------------


def test_keygen_makes_a_private_key_and_never_overwrites_one(tmp_path, key_file):
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    before = key_file.read_text()
    again = cli("vault", "keygen", "--out", str(key_file))
    assert again.returncode == 2 and "exists" in again.stderr
    assert key_file.read_text() == before


def test_encrypt_string_gives_a_value_a_playbook_reads(tmp_path, key_file):
    text = f"name: uses-vault\nvars:\n{_indent(snippet('token', SECRET, key_file))}steps:\n"
    text += (
        '  - id: length\n    shell: "test ${#TOKEN} -eq '
        + str(len(SECRET))
        + "\"\n    env: {TOKEN: '{{ token }}'}\n"
    )
    run = play(tmp_path, text, "--vault-key-file", str(key_file))
    assert run.returncode == 0, run.stderr
    assert run.step("length")["status"] == "changed"


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def test_whole_files_encrypt_decrypt_and_view_in_place(tmp_path, key_file):
    vars_file = tmp_path / "prod.yml"
    original = f"db_password: {SECRET}\nregion: eu-west-1\n"
    vars_file.write_text(original)
    vars_file.chmod(0o640)
    key = ("--vault-key-file", str(key_file))

    assert cli("vault", "encrypt", str(vars_file), *key).returncode == 0
    sealed = vars_file.read_text()
    assert SECRET not in sealed and sealed.startswith("$RUNBOOK_VAULT;1;")
    assert stat.S_IMODE(vars_file.stat().st_mode) == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prod.yml")]  # no temporary left
    assert cli("vault", "encrypt", str(vars_file), *key).returncode == 2  # not twice

    viewed = cli("vault", "view", str(vars_file), *key)
    assert viewed.returncode == 0 and viewed.stdout == original
    assert vars_file.read_text() == sealed

    run = play(
        tmp_path,
        "name: p\nvars_files: [prod.yml]\nsteps:\n"
        "  - id: say\n    shell: 'echo {{ db_password }} {{ region }}'\n",
        *key,
    )
    assert run.returncode == 0, run.stderr
    assert run.lines("say") == ["*** ***"]  # every value of an encrypted file is a secret

    assert cli("vault", "decrypt", str(vars_file), *key).returncode == 0
    assert vars_file.read_text() == original


def test_missing_and_wrong_keys_name_the_value_and_exit_2(tmp_path, key_file):
    text = f"name: p\nvars:\n{_indent(snippet('token', SECRET, key_file))}steps: []\n"
    missing = play(tmp_path, text)
    assert missing.returncode == 2
    (line,) = missing.stderr.strip().splitlines()
    assert line.startswith(f"{tmp_path / 'play.yml'}:3:10: !vault value: no vault key")

    other = tmp_path / "other.key"
    assert cli("vault", "keygen", "--out", str(other)).returncode == 0
    wrong = play(tmp_path, text, "--vault-key-file", str(other))
    assert wrong.returncode == 2
    assert ":3:10: !vault value: cannot decrypt" in wrong.stderr and "wrong key" in wrong.stderr

    from_env = play(tmp_path, text, env={"RUNBOOK_VAULT_KEY": key_file.read_text().strip()})
    assert from_env.returncode == 0, from_env.stderr


def test_a_playbook_can_name_its_key_file(tmp_path, key_file):
    text = (
        f"name: p\nvault_key_file: vault.key\nvars:\n{_indent(snippet('token', SECRET, key_file))}steps: []\n"
    )
    run = play(tmp_path, text)
    assert run.returncode == 0, run.stderr


def test_secrets_from_env_file_and_vault_and_their_errors(tmp_path, key_file):
    (tmp_path / "token.txt").write_text("file-secret-value\n")
    good = (
        "name: p\nsecrets:\n  a: {env: APP_SECRET}\n  b: {file: token.txt}\n"
        + _indent(snippet("c", SECRET, key_file))
        + 'steps:\n  - id: lengths\n    shell: "echo {{ secrets.a | length }} {{ secrets.b | length }}'
        ' {{ secrets.c | length }} {{ secrets.b }}"\n'
    )
    run = play(tmp_path, good, "--vault-key-file", str(key_file), env={"APP_SECRET": "env-secret-value"})
    assert run.returncode == 0, run.stderr
    assert run.lines("lengths") == [f"16 17 {len(SECRET)} ***"]

    bad = (
        "name: p\nsecrets:\n  a: {env: NOT_SET_ANYWHERE}\n  b: {file: missing.txt}\n"
        "  c: in-clear-text\nsteps: []\n"
    )
    proc = run_cli("validate", str(_write(tmp_path / "bad.yml", bad)))
    assert proc.returncode == 2
    lines = proc.stdout.strip().splitlines()
    assert lines[0].endswith("secrets.a: the environment variable NOT_SET_ANYWHERE is not set")
    assert ":3:" in lines[0] and ":4:" in lines[1] and "missing.txt" in lines[1]
    assert ":5:" in lines[2] and "clear text" in lines[2] and "encrypt-string" in lines[2]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- masking -----------------------------------------------------------------------------------


def test_encodings_and_the_short_value_rule():
    secrets = Secrets()
    secrets.add(SECRET)
    secrets.add("abc")  # shorter than MIN_LENGTH: not masked
    assert len("abc") < MIN_LENGTH
    for form in encodings(SECRET):
        assert secrets.text(f"<{form}>") == "<***>"
    assert secrets.text(json.dumps({"v": SECRET})) == '{"v": "***"}'
    assert secrets.text(quote(SECRET, safe="")) == "***"
    assert secrets.text("abc") == "abc"
    assert secrets.mask({"k": [SECRET, 3, None], SECRET: True}) == {"k": ["***", 3, None], "***": True}


LEAKY = """\
name: leaky
secrets:
  token: {{env: LEAKY_TOKEN}}
steps:
  - id: echo
    shell: "echo plain {{{{ secrets.token }}}}; echo b64 {{{{ secrets.token | b64encode }}}}"
  - id: split
    shell: >-
      printf 'half %s' '{{{{ secrets.token[:7] }}}}'; sleep 0.3;
      printf '%s end\\n' '{{{{ secrets.token[7:] }}}}'
  - id: send
    http:
      url: "{url}"
      headers: {{X-Api-Token: "{{{{ secrets.token }}}}"}}
      expect_status: 200
  - id: error
    assert: {{that: ["secrets.token == 'nope'"], message: "token {{{{ secrets.token }}}} was refused"}}
    continue_on_error: true
  - id: fail
    shell: "echo 'cannot log in with {{{{ secrets.token }}}}' >&2; exit 3"
"""


def test_a_secret_leaks_nowhere(tmp_path):
    with serving() as server:
        server.route("/hook", Reply(200, "ok"))
        text = LEAKY.format(url=server.url("/hook"))
        report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
        run = play(
            tmp_path,
            text,
            "--report",
            str(report),
            "--junit",
            str(junit),
            env={"LEAKY_TOKEN": SECRET},
        )
        received = [seen.header("X-Api-Token") for seen in server.requests("/hook")]
    assert received == [SECRET]  # the server got the real value
    assert run.returncode == 1
    assert run.lines("echo") == ["plain ***", "b64 ***"]
    assert run.lines("split") == ["half *** end"]  # whole lines are masked, however they were read
    assert run.lines("fail", "stderr") == ["cannot log in with ***"]
    assert "***" in one_line_error(run.step("error"))
    plain = subprocess.run(
        [sys.executable, "-m", "runner", "play", str(tmp_path / "play.yml"), "--output", "plain", "-v"],
        capture_output=True,
        env={**os.environ, "LEAKY_TOKEN": SECRET},
        cwd=tmp_path,
        timeout=60,
    )
    assert b"plain ***" in plain.stdout

    outputs = {
        "stdout": run.stdout.encode(),
        "stderr": run.stderr.encode(),
        "plain stdout": plain.stdout,
        "plain stderr": plain.stderr,
        "report": report.read_bytes(),
        "junit": junit.read_bytes(),
    }
    home = Path(os.environ["RUNBOOK_HOME"])
    for path in home.iterdir():  # history.db and its WAL
        outputs[path.name] = path.read_bytes()
    assert "history.db" in outputs
    forms = {form.encode() for form in encodings(SECRET)}
    for name, data in outputs.items():
        for form in forms:
            assert form not in data, f"{form!r} leaked into {name}"
    assert b"***" in outputs["report"] and b"***" in outputs["stdout"]


def test_an_encrypted_vars_file_without_its_key_is_an_error_at_its_first_line(tmp_path, key_file):
    vars_file = tmp_path / "prod.yml"
    vars_file.write_text(f"db_password: {SECRET}\n")
    assert cli("vault", "encrypt", str(vars_file), "--vault-key-file", str(key_file)).returncode == 0
    run = play(tmp_path, "name: p\nvars_files: [prod.yml]\nsteps: []\n")
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"{vars_file}:1:1: encrypted file: no vault key")
