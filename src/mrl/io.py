"""Crash-safe file writing, checksums and folder locks, shared by runs, embeddings and indexes.

Every write goes to a temporary file in the target's folder, is fsynced, then renamed
over the target, so a crash (even kill -9) leaves either the old file or the new one.
Locks are OS file locks (`flock`): the kernel releases them when their process exits,
however it exits, so a crashed holder never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

from mrl.errors import LockedError


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike,
    *,
    shared: bool = False,
    timeout: float = 0.0,
    what: str = "this folder",
) -> Iterator[bool]:
    """Hold an OS lock on the file `path` (created if missing) for the `with` block.

    Args:
        path: the lock file, e.g. `run_dir/.lock`.
        shared: a shared (reader) lock; many may hold one at once, never beside an exclusive.
        timeout: seconds to wait for the lock; 0 tries once.
        what: names the locked thing in the error ("run folder runs/demo").

    Yields:
        True once the lock is held. Where the lock file cannot be created (a read-only
        folder) and `shared` is set, yields False without locking: nobody can write there.

    Raises:
        LockedError: another process holds a conflicting lock past `timeout`; the message
            names the holder's pid when it recorded one.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        if shared:
            yield False
            return
        raise
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    by = f" (process {holder})" if holder.isdigit() else ""
                    raise LockedError(
                        f"{what} is in use by another process{by}; wait for it to finish "
                        "or use another folder"
                    ) from None
                time.sleep(0.01)
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry so a rename inside it survives a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside `path` to write; on clean exit it is fsynced and renamed over `path`.

    For writers that need a file name rather than a file object (e.g. a NumPy memmap).
    On an exception the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside `path`; on clean exit fsync it and rename it over `path`.

    On an exception the temp file is removed and `path` is untouched.
    """
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` that never leaves a half-written file at `path`."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks so large arrays need no extra memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


CURRENT = "CURRENT"
_VERSION_PREFIX = "v"
_STAGING_PREFIX = ".staging-"


def current_version_dir(root: str | os.PathLike) -> Path:
    """The committed version folder of a versioned folder `root` (see `atomic_dir_commit`).

    Raises:
        FileNotFoundError: `root` does not exist.
        ValueError: `root` has no CURRENT file, or CURRENT names a missing folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    pointer = root / CURRENT
    if not pointer.is_file():
        raise ValueError(f"{root} is not a versioned mrl folder: it has no {CURRENT} file")
    name = pointer.read_text().strip()
    version = root / name
    if not name.startswith(_VERSION_PREFIX) or "/" in name or not version.is_dir():
        raise ValueError(f"{root}/{CURRENT} names {name!r}, which is not a version folder here")
    return version


@contextlib.contextmanager
def atomic_dir_commit(root: str | os.PathLike) -> Iterator[Path]:
    """Write a new version of folder `root` so that readers see the old or the new one, never a mix.

    Yields an empty staging folder inside `root`. On clean exit every file in it is fsynced, it
    is renamed to a fresh version folder `v000NNN`, `root/CURRENT` is atomically rewritten to
    name it, and only then are older versions and stale staging folders deleted. A crash or an
    exception at any point leaves `CURRENT` naming the previous complete version (and a first
    save leaves no `CURRENT`, which readers report as "not a versioned folder").

    Args:
        root: the folder; created if missing. A non-empty folder without `CURRENT` is refused so
            a foreign folder is never written into.

    Yields:
        Path of the staging folder to fill.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / CURRENT).exists() and any(
        not p.name.startswith(_STAGING_PREFIX) for p in root.iterdir()
    ):
        raise ValueError(
            f"refusing to write into {root}: it is not empty and has no {CURRENT} file "
            "(not a versioned mrl folder)"
        )
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))
    try:
        yield staging
        for p in staging.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(staging)
        numbers = [
            int(p.name[len(_VERSION_PREFIX) :])
            for p in root.iterdir()
            if p.name.startswith(_VERSION_PREFIX) and p.name[len(_VERSION_PREFIX) :].isdigit()
        ]
        version = root / f"{_VERSION_PREFIX}{max(numbers, default=0) + 1:06d}"
        os.rename(staging, version)
        fsync_dir(root)
        atomic_write_bytes(root / CURRENT, f"{version.name}\n".encode())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The new version is committed; what follows is clean-up a crash may skip harmlessly.
    for p in root.iterdir():
        if p != version and p.name.startswith((_STAGING_PREFIX, _VERSION_PREFIX)):
            shutil.rmtree(p, ignore_errors=True)
