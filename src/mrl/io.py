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

import numpy as np

from mrl.errors import FormatError, LockedError, MissingPathError, PathError


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
        folder or file system) and `shared` is set, yields False without locking: a reader
        of a folder nobody may write needs no lock.

    Raises:
        LockedError: another process holds a conflicting lock past `timeout`; the message
            names the holder's pid when it recorded one.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # read-only folder or file system
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
    make_dirs(path.parent, f"folder of {path.name}")
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
def atomic_npy(path: str | os.PathLike, shape: tuple[int, ...], dtype: str) -> Iterator[Any]:
    """A writable .npy memmap on a temp name beside `path`, renamed over it on clean exit.

    Arrays larger than RAM are filled chunk by chunk and never appear half-written at `path`.
    """
    with atomic_path(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        yield arr
        arr.flush()
        del arr


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
    import torch  # here, so that the layers which never save tensors do not load torch

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
_LOCKS = ".locks"  # root/.locks/write serialises writers; root/.locks/<version> guards readers
WRITE_LOCK_TIMEOUT_S = 300.0  # a second writer waits this long for the first, then refuses
_READ_RETRIES = 100  # a reader re-resolves CURRENT when a writer pruned its version first


def _check_versioned_root(root: Path) -> None:
    if root.is_file():
        raise PathError(f"{root} is a file, not a versioned mrl folder (give the folder)")
    if not root.is_dir():
        raise MissingPathError(f"no such folder: {root}")


def _pointed_version(root: Path) -> Path:
    """The folder `root/CURRENT` names (which may already be gone under a racing writer)."""
    _check_versioned_root(root)
    pointer = root / CURRENT
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        raise FormatError(
            f"{root} is not a versioned mrl folder: it has no {CURRENT} file"
        ) from None
    if not name.startswith(_VERSION_PREFIX) or "/" in name or name in ("", ".", ".."):
        raise FormatError(f"{root}/{CURRENT} names {name!r}, which is not a version folder here")
    return root / name


def current_version_dir(root: str | os.PathLike) -> Path:
    """The committed version folder of a versioned folder `root` (see `atomic_dir_commit`).

    Prefer `read_version`, which also keeps that version from being pruned while it is read.

    Raises:
        MissingPathError: `root` does not exist.
        PathError: `root` is a file.
        FormatError: `root` has no CURRENT file, or CURRENT names a missing folder.
    """
    version = _pointed_version(Path(root))
    if not version.is_dir():
        raise FormatError(
            f"{root}/{CURRENT} names {version.name!r}, which is not a version folder here"
        )
    return version


@contextlib.contextmanager
def read_version(root: str | os.PathLike) -> Iterator[Path]:
    """Yield the committed version folder of `root`, which no writer deletes until the block ends.

    CURRENT is resolved once; the reader then holds a shared lock on that version, which a
    writer's clean-up must take exclusively before it deletes the folder. A writer that
    committed and pruned between our reading CURRENT and taking the lock is seen (the folder
    is gone and CURRENT names another) and CURRENT is resolved again, so a concurrent save
    never fails a load.

    Raises:
        as `current_version_dir`.
    """
    root = Path(root)
    for _ in range(_READ_RETRIES):
        version = _pointed_version(root)
        lock = root / _LOCKS / version.name
        with contextlib.suppress(OSError):
            lock.parent.mkdir(exist_ok=True)
        with file_lock(lock, shared=True, timeout=WRITE_LOCK_TIMEOUT_S, what=f"{version}"):
            if version.is_dir():
                yield version
                return
        if _pointed_version(root) == version:  # no writer moved on: the folder is just missing
            current_version_dir(root)  # raises the named error
    raise LockedError(f"{root} changed {_READ_RETRIES} times while opening it; retry the load")


@contextlib.contextmanager
def atomic_dir_commit(
    root: str | os.PathLike, lock_timeout: float = WRITE_LOCK_TIMEOUT_S
) -> Iterator[Path]:
    """Write a new version of folder `root` so that readers see the old or the new one, never a mix.

    Writers are serialised by an OS lock on `root/.locks/write` (a second one waits up to
    `lock_timeout` seconds, then raises `LockedError`); holding it, the writer deletes staging
    folders that killed saves left behind, then yields an empty staging folder. On clean exit
    every file in it is fsynced, it is renamed to a fresh version folder `v000NNN`,
    `root/CURRENT` is atomically rewritten to name it, and only then are older versions deleted,
    each once no reader holds it (`read_version`); one still being read stays until a later
    save. A crash or an exception at any point leaves `CURRENT` naming the previous complete
    version (and a first save leaves no `CURRENT`, which readers report as "not a versioned
    folder").

    Args:
        root: the folder; created if missing. A non-empty folder without `CURRENT` is refused so
            a foreign folder is never written into.
        lock_timeout: seconds to wait for another writer of `root`.

    Yields:
        Path of the staging folder to fill.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise PathError(f"{root} exists and is a file; give a folder path for the index")
    make_dirs(root, "index folder")
    if not (root / CURRENT).exists() and any(
        not p.name.startswith((_STAGING_PREFIX, _LOCKS)) for p in root.iterdir()
    ):
        raise PathError(
            f"refusing to write into {root}: it is not empty and has no {CURRENT} file "
            "(not a versioned mrl folder); choose an empty or new folder"
        )
    (root / _LOCKS).mkdir(exist_ok=True)
    with file_lock(root / _LOCKS / "write", timeout=lock_timeout, what=f"folder {root}"):
        for p in root.iterdir():  # the writer lock is ours: every staging folder is stale
            if p.name.startswith(_STAGING_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
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
        _prune_versions(root, keep=version.name)


def _prune_versions(root: Path, keep: str) -> None:
    """Delete every version folder but `keep` that no reader holds, with its reader lock file."""
    names = {p.name for p in root.iterdir() if p.name.startswith(_VERSION_PREFIX)}
    names |= {p.name for p in (root / _LOCKS).iterdir() if p.name != "write"}
    for name in sorted(names - {keep}):
        lock = root / _LOCKS / name
        try:
            with file_lock(lock, what=f"{root / name}"):
                shutil.rmtree(root / name, ignore_errors=True)
                lock.unlink(missing_ok=True)  # a reader blocked on it re-resolves CURRENT
        except LockedError:
            continue  # being read: a later save deletes it


def make_dirs(path: str | os.PathLike, what: str = "folder") -> Path:
    """`mkdir -p path`, with a named error when it cannot be a writable folder.

    Call it before long work whose results go there, so a bad output path fails first.

    Args:
        path: the folder.
        what: names its role in the message ("run folder", "report folder").

    Raises:
        PathError: `path` or a parent is a file, or the folder cannot be created or written.
    """
    path = Path(path)
    for p in (path, *path.parents):  # name the file in the way, nearest first
        if p.exists():
            if not p.is_dir():
                where = "it is a file" if p == path else f"{p} is a file"
                raise PathError(f"cannot use {path} as the {what}: {where}; choose another path")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # permission denied, a read-only or virtual file system, ...
        raise PathError(
            f"cannot create the {what} {path}: {e.strerror or e}; choose a folder you can write to"
        ) from None
    return path
