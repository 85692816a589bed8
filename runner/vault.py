"""Encrypted values and files (SPEC §4): AES-256-GCM from the ``cryptography`` package.

The text format, versioned so it can change later, is ASCII that sits in YAML and in
git diffs::

    $RUNBOOK_VAULT;1;AES256GCM;key                 a key made by `runbook vault keygen`
    $RUNBOOK_VAULT;1;AES256GCM;scrypt;<salt>       a key derived from a passphrase
    <base64 of a 12-byte nonce, the ciphertext and its 16-byte tag, in lines of 76>

The header line is authenticated with the ciphertext (GCM's associated data), so a
header edited to another method fails like a tampered ciphertext. A passphrase is
stretched with scrypt (n=2^15, r=8, p=1) and a random 16-byte salt per value or file.

Where the key comes from, first found wins: ``--vault-key-file FILE``, the environment
variable ``RUNBOOK_VAULT_KEY`` (the key text itself), ``RUNBOOK_VAULT_KEY_FILE``, then a
playbook's ``vault_key_file:`` (relative to the playbook). A key file holds either a key
made by ``keygen`` (``runbook-vault-key-v1:...``) or any other text, taken as a passphrase.
"""

from __future__ import annotations

import base64
import os
import secrets
import textwrap
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from runner.diagnostics import Diagnostic, Position
from runner.errors import UsageError

MAGIC = "$RUNBOOK_VAULT;"
VERSION = "1"
CIPHER = "AES256GCM"
KEY_PREFIX = "runbook-vault-key-v1:"
NONCE_BYTES = 12
SALT_BYTES = 16
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
KEYGEN_HINT = "runbook vault keygen --out vault.key makes one"


class VaultError(UsageError):
    """A vault value or file that cannot be decrypted, or no key to do it (exit 2)."""


@dataclass(frozen=True)
class VaultKey:
    """A key, or a passphrase to derive keys from, and where it came from (for messages)."""

    source: str
    raw: bytes | None = None
    passphrase: bytes | None = field(default=None, repr=False)

    def for_header(self, header: list[str]) -> bytes:
        method = header[3] if len(header) > 3 else ""
        if method == "key":
            if self.raw is None:
                raise VaultError(
                    f"this value was encrypted with a generated key, but {self.source} holds a passphrase"
                )
            return self.raw
        if method == "scrypt" and len(header) > 4:
            if self.passphrase is None:
                raise VaultError(
                    f"this value was encrypted with a passphrase, but {self.source} holds a generated key"
                )
            return _derive(self.passphrase, base64.b64decode(header[4]))
        raise VaultError(f"unknown vault method {';'.join(header[2:4])!r} (this runbook reads format 1)")


@cache
def _derive(passphrase: bytes, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, **SCRYPT).derive(passphrase)


def key_from_text(text: str, source: str) -> VaultKey:
    text = text.strip()
    if not text:
        raise VaultError(f"{source} is empty: it should hold a vault key or a passphrase ({KEYGEN_HINT})")
    if text.startswith(KEY_PREFIX):
        try:
            raw = base64.urlsafe_b64decode(text[len(KEY_PREFIX) :])
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise VaultError(f"{source} holds a damaged vault key (expected 32 bytes after {KEY_PREFIX})")
        return VaultKey(source, raw=raw)
    return VaultKey(source, passphrase=text.encode())


def key_from_file(path: str | Path, source: str | None = None) -> VaultKey:
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VaultError(f"vault key file {path} does not exist ({KEYGEN_HINT})") from None
    except OSError as exc:
        raise VaultError(f"cannot read the vault key file {path}: {exc.strerror or exc}") from None
    return key_from_text(text, source or f"the key file {path}")


class KeyRing:
    """The key of this process: from the command line, the environment, or a playbook."""

    def __init__(self) -> None:
        self.key_file: str | None = None  # --vault-key-file
        self.fallback_file: Path | None = None  # a playbook's vault_key_file

    def key(self) -> VaultKey:
        if self.key_file:
            return key_from_file(self.key_file, f"--vault-key-file {self.key_file}")
        if os.environ.get("RUNBOOK_VAULT_KEY"):
            return key_from_text(os.environ["RUNBOOK_VAULT_KEY"], "RUNBOOK_VAULT_KEY")
        if os.environ.get("RUNBOOK_VAULT_KEY_FILE"):
            path = os.environ["RUNBOOK_VAULT_KEY_FILE"]
            return key_from_file(path, f"RUNBOOK_VAULT_KEY_FILE ({path})")
        if self.fallback_file is not None:
            return key_from_file(self.fallback_file, f"vault_key_file {self.fallback_file}")
        raise VaultError(
            f"no vault key: set RUNBOOK_VAULT_KEY, or pass --vault-key-file FILE ({KEYGEN_HINT})"
        )


KEYS = KeyRing()


@dataclass(frozen=True)
class Sealed:
    """A ``!vault`` value as loaded: decrypted once the file is loaded and the key known."""

    text: str
    position: Position


class SecretText(str):
    """A decrypted value: text like any other, marked so ``secrets:`` can tell it from clear text."""

    __slots__ = ()


def unseal(data: object, problems: list[Diagnostic]) -> object:
    """``data`` with every ``Sealed`` value decrypted and registered for masking.

    A value that cannot be decrypted (no key, a wrong key, altered text) is a problem at
    its position; it becomes an empty text so the rest of the file is still checked."""
    from runner.masking import SECRETS

    if isinstance(data, Sealed):
        try:
            plain = decrypt(data.text, KEYS.key())
        except VaultError as exc:
            problems.append(Diagnostic(data.position, "!vault value", str(exc)))
            return SecretText("")
        SECRETS.add(plain)
        return SecretText(plain)
    if isinstance(data, dict):
        return {key: unseal(value, problems) for key, value in data.items()}
    if isinstance(data, list):
        return [unseal(item, problems) for item in data]
    return data


def generate_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def is_encrypted(text: str) -> bool:
    return text.lstrip().startswith(MAGIC)


def encrypt(plaintext: str, key: VaultKey) -> str:
    """The vault text of ``plaintext``: a header line, then base64 lines."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if key.raw is not None:
        header, secret = f"{MAGIC}{VERSION};{CIPHER};key", key.raw
    else:
        assert key.passphrase is not None
        salt = secrets.token_bytes(SALT_BYTES)
        header = f"{MAGIC}{VERSION};{CIPHER};scrypt;{base64.b64encode(salt).decode()}"
        secret = _derive(key.passphrase, salt)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(secret).encrypt(nonce, plaintext.encode("utf-8"), header.encode())
    body = base64.b64encode(nonce + sealed).decode()
    return header + "\n" + "\n".join(textwrap.wrap(body, 76)) + "\n"


def decrypt(text: str, key: VaultKey) -> str:
    """The plaintext of vault text; VaultError when the key is wrong or the text was altered."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or not lines[0].startswith(MAGIC):
        raise VaultError(f"not a vault value: it should start with {MAGIC}")
    header = lines[0].split(";")
    if len(header) < 4 or header[1] != VERSION or header[2] != CIPHER:
        raise VaultError(f"unknown vault format {lines[0]!r} (this runbook reads format {VERSION}, {CIPHER})")
    try:
        blob = base64.b64decode("".join(lines[1:]), validate=True)
    except ValueError:
        raise VaultError("the vault text is damaged (not base64)") from None
    if len(blob) < NONCE_BYTES + 16:
        raise VaultError("the vault text is damaged (too short)")
    try:
        plain = AESGCM(key.for_header(header)).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], lines[0].encode()
        )
    except InvalidTag:
        raise VaultError(
            f"cannot decrypt with the key from {key.source}: a wrong key, or the text was altered"
        ) from None
    return plain.decode("utf-8")


def yaml_snippet(name: str, vault_text: str) -> str:
    """``NAME: !vault |`` and the indented vault text, to paste into a playbook."""
    return f"{name}: !vault |\n" + textwrap.indent(vault_text, "  ")
