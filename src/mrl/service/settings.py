"""`Settings`: everything `mrl serve` is configured with, checked once before the server starts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from mrl.checks import check_int
from mrl.errors import ConfigError
from mrl.service.limits import Limits


@dataclass(frozen=True)
class Settings:
    """How one server runs.

    Attributes:
        data_dir: the folder the backend owns (the log and snapshots, or the embedded database).
        host: address to bind; anything but loopback needs API keys.
        port: TCP port, 0..65535.
        backend: "memory" (in-process index + write-ahead log) or "postgres".
        keys_file: file of hashed API keys (see `mrl.service.auth`); None: `MRL_API_KEYS` or
            no keys (open access, loopback only).
        model: a text model folder for /v1/embeddings and text items/queries; None: the
            default all-MiniLM-L6-v2 when it is installed.
        dsn: a PostgreSQL DSN for the postgres backend; None: the embedded server in data_dir.
        limits: request limits.
        snapshot_bytes: write-ahead log size that triggers a snapshot (memory backend).
        fused_rerank: run each collection's rerank-to-full-D plans as one faiss call
            (`MatryoshkaIndex.use_fused_rerank`: faster one query per call, a second copy
            of the vectors in RAM); memory backend only.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "memory"
    keys_file: Path | None = None
    model: str | None = None
    dsn: str | None = None
    limits: Limits = field(default_factory=Limits)
    snapshot_bytes: int = 64 << 20
    fused_rerank: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "port", check_int("port", self.port, 0, 65535))
        if self.backend not in ("memory", "postgres"):
            raise ConfigError(f"unknown backend {self.backend!r}; choose 'memory' or 'postgres'")
        if self.fused_rerank and self.backend != "memory":
            raise ConfigError(
                "--fused-rerank applies to the memory backend (PostgreSQL reranks in SQL); "
                "drop it or use --backend memory"
            )


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
