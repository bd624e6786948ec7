"""Secrets on disk for a devnet and for `crossdvp deploy`: encrypted JSON keystores and 0600 secret files.

A devnet generates its keys (DON signers, the parties' chain keys) and one random password that
encrypts all its keystores; the password and the ledger's API keys live in files readable only by
the owner. This is for a local network only: production keys come from a keystore whose password
is in the environment, never from a file the tool generated, and never from the command line.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from eth_account import Account

from crossdvp.errors import ConfigError

__all__ = [
    "generate_password",
    "load_key",
    "read_secret",
    "secure_dir",
    "write_keystore",
    "write_secret",
]


def secure_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it owner-only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_secret(path: Path, text: str) -> Path:
    """Write `text` to a new file readable only by its owner (0600, set at creation, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)  # O_CREAT's mode does not apply to a file that already existed
    return path


def read_secret(path: Path) -> str:
    """A secret file's content without surrounding whitespace. Raises ConfigError naming the file."""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def write_keystore(path: Path, private_key: bytes, password: str, *, scrypt_n: int = 2**18) -> str:
    """Encrypt `private_key` into a v3 JSON keystore (scrypt) at `path` (0600); returns its lowercase
    address. `scrypt_n` is the scrypt work factor: the standard 2**18 takes about a second to encrypt
    and again to decrypt; a devnet uses less so that its nodes start in a moment."""
    encrypted = Account.encrypt(private_key, password, kdf="scrypt", iterations=scrypt_n)
    write_secret(path, json.dumps(encrypted))
    return str(Account.from_key(private_key).address).lower()


def load_key(path: Path, password: str) -> bytes:
    """Decrypt a JSON keystore. Raises ConfigError if the file is missing, not JSON, or the password is
    wrong (the message names the file, never the password)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read keystore {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"keystore {path} is not JSON") from None
    try:
        return bytes(Account.decrypt(data, password))
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"cannot decrypt keystore {path} (wrong password?)") from None
