"""API keys: bearer tokens checked against SHA-256 hashes, each read-only or read-write.

A keys file (or the `MRL_API_KEYS` environment variable) holds one key per line as
`<role> <sha256 hex of the key>` with role `read` or `write` (`#` starts a comment; in the
variable, entries may also be separated by commas). Only hashes are stored, so the file
does not give the keys away; keys are random tokens (`new_key`), so an unsalted hash is
enough, and the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mrl.errors import ConfigError, MissingPathError

ROLES = ("read", "write")  # write implies read
ENV_VAR = "MRL_API_KEYS"


def hash_key(key: str) -> str:
    """The stored form of a key: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(role: str) -> tuple[str, str]:
    """A fresh random key and the keys-file line that grants it `role`."""
    if role not in ROLES:
        raise ConfigError(f"unknown key role {role!r}; choose one of {list(ROLES)}")
    key = "mrl_" + secrets.token_urlsafe(32)
    return key, f"{role} {hash_key(key)}"


@dataclass(frozen=True)
class Keys:
    """The hashed keys a server accepts, by role; empty means open access (loopback only)."""

    hashes: tuple[tuple[str, str], ...] = ()  # (role, sha256 hex)

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def role_of(self, key: str) -> str | None:
        """The role of a presented key, or None if it is not one of ours."""
        digest = hash_key(key)
        role = None
        for r, h in self.hashes:  # every entry is compared: no early exit to time
            if hmac.compare_digest(digest, h):
                role = r
        return role


def parse_keys(text: str, source: str) -> Keys:
    """Read `role hash` entries (lines or comma-separated); a bad entry names its line."""
    hashes = []
    for n, line in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        ok = len(parts) == 2 and parts[0] in ROLES and len(parts[1]) == 64
        if not ok or any(c not in "0123456789abcdef" for c in parts[1]):
            raise ConfigError(
                f"{source} entry {n} is not '<read|write> <sha256 hex>'; create lines with "
                "`mrl serve --new-key write` (never store the key itself)"
            )
        hashes.append((parts[0], parts[1]))
    return Keys(tuple(hashes))


def load_keys(keys_file: str | os.PathLike | None) -> Keys:
    """Keys from `keys_file`, else from the `MRL_API_KEYS` variable, else none."""
    if keys_file is not None:
        path = Path(keys_file)
        if not path.is_file():
            raise MissingPathError(f"no keys file {path}; create it with `mrl serve --new-key`")
        return parse_keys(path.read_text(), str(path))
    return parse_keys(os.environ.get(ENV_VAR, ""), f"${ENV_VAR}")
