"""The node's DON signing key: loaded from an encrypted JSON keystore or, for development, a raw key.

The same key signs reports (Keystone format, see crossdvp.settlement.report) and peer messages
(EIP-191 over the keccak256 of the message's canonical JSON, see peers.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account

from crossdvp.oracle.errors import KeyLoadError

__all__ = ["NodeKey", "generate_keystore", "key_from_hex", "load_keystore"]


@dataclass(frozen=True, slots=True)
class NodeKey:
    """A secp256k1 secret and its lowercase address. The secret is kept out of repr()."""

    private_key: bytes = field(repr=False)
    address: str

    def __post_init__(self) -> None:
        if len(self.private_key) != 32:
            raise KeyLoadError(f"a private key is 32 bytes, got {len(self.private_key)}")


def key_from_hex(value: str, *, source: str) -> NodeKey:
    """A key from `0x` + 64 hex characters. Rejects anything else, naming `source` (never the value)."""
    text = value.strip()
    if text.startswith(("0x", "0X")):
        text = text[2:]
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise KeyLoadError(f"{source}: not a hex private key") from exc
    if len(raw) != 32:
        raise KeyLoadError(f"{source}: a private key is 32 bytes (64 hex characters), got {len(raw)}")
    try:
        address = Account.from_key(raw).address.lower()
    except Exception as exc:  # eth_keys raises ValidationError for 0 or >= the curve order
        raise KeyLoadError(f"{source}: not a valid secp256k1 private key") from exc
    return NodeKey(private_key=raw, address=address)


def load_keystore(path: Path, password: str) -> NodeKey:
    """Decrypt an Ethereum JSON keystore (v3). Rejects a missing/unreadable file or a wrong password."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise KeyLoadError(f"key.keystore: cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeyLoadError(f"key.keystore: {path} is not JSON") from exc
    try:
        raw = bytes(Account.decrypt(data, password))
    except ValueError as exc:
        raise KeyLoadError(f"key.keystore: cannot decrypt {path} (wrong password?)") from exc
    return key_from_hex(raw.hex(), source=f"key.keystore {path}")


def generate_keystore(path: Path, password: str, *, private_key: bytes | None = None) -> NodeKey:
    """Write a new (or the given) key to `path` as an encrypted keystore; refuses to overwrite."""
    if path.exists():
        raise KeyLoadError(f"{path} exists; refusing to overwrite a keystore")
    if not password:
        raise KeyLoadError("an empty keystore password is not allowed")
    account = Account.from_key(private_key) if private_key is not None else Account.create()
    encrypted = Account.encrypt(account.key, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(encrypted))
    path.chmod(0o600)
    return NodeKey(private_key=bytes(account.key), address=account.address.lower())
