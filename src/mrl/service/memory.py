"""`MemoryBackend`: a `MatryoshkaIndex` per collection, made durable by a write-ahead log.

Every write is validated completely, then logged and fsynced (`mrl.service.wal`), and only
then applied to the in-memory index and acknowledged, so an acknowledged write survives
kill -9 and a refused one leaves nothing behind. On start the latest snapshot is loaded and
the log records newer than it are replayed.

Snapshots: once the log passes `snapshot_bytes`, a background thread pauses writers, saves
every index atomically (`MatryoshkaIndex.save`) into a fresh folder `snapshots/<lsn>`, then
atomically rewrites `snapshot.json` naming that folder and the log position `lsn` it covers,
and only then truncates the log. A crash before `snapshot.json` is rewritten leaves the old
snapshot and the full log; a crash after it but before the truncation leaves records the
new snapshot already holds, which replay skips by lsn: nothing is applied twice or lost.

Locks: one server per data folder (an OS lock on `.lock`); per collection, writers are
serialised by a mutex held from validation to apply, and a readers-writer lock lets searches
run concurrently with each other and with a writer's fsync (only the apply itself excludes
them). The registry lock guards the set of collections; it is always taken before a
collection's mutex, never after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrl.checks import check_int, check_tag, require_keys
from mrl.errors import ConfigError, ConflictError, FormatError, InputError, NotFoundError
from mrl.io import atomic_write_json, file_lock, fsync_dir, make_dirs
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Plan
from mrl.retrieval.storage import as_ids, as_rows, check_new_ids
from mrl.service.backend import CollectionSpec, SearchHits
from mrl.service.spec import (
    check_delete_ids,
    check_name,
    check_search_k,
    check_spec,
    resolve_plan,
    spec_from_dict,
    spec_to_dict,
)
from mrl.service.wal import Record, WriteAheadLog

logger = logging.getLogger(__name__)

SNAPSHOT_FORMAT, SNAPSHOT_VERSION = "mrl-service-snapshot", 1
SNAPSHOT_BYTES = 64 << 20  # log size that triggers a snapshot: replay stays around a second


class RWLock:
    """Many readers or one writer; a waiting writer holds new readers back (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class _Collection:
    """One collection's state: the index (None until the first add) and payloads by id."""

    spec: CollectionSpec
    index: MatryoshkaIndex | None = None
    payloads: dict[int, dict] = field(default_factory=dict)
    writer: threading.Lock = field(default_factory=threading.Lock)
    rw: RWLock = field(default_factory=RWLock)
    dropped: bool = False
    tuning: dict | None = None  # the table of mrl.service.tuning.tune, once tuned

    @property
    def count(self) -> int:
        return 0 if self.index is None else self.index.count

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id, -1 where absent."""
        if self.index is None:
            return np.full(len(ids), -1, dtype=np.int64)
        return self.index.store_.rows_of(ids)


class MemoryBackend:
    """Collections held in memory, durable through a write-ahead log in `data_dir`.

    Args:
        data_dir: the folder the backend owns (created if missing); one server at a time.
        snapshot_bytes: log size in bytes past which a background snapshot truncates it.
        fused_rerank: every collection's index runs rerank-to-full-D plans as one faiss
            call (`MatryoshkaIndex.use_fused_rerank`; a second copy of its vectors in RAM).

    Raises:
        LockedError: another server holds `data_dir`.
        FormatError: a snapshot or log that is not ours or is damaged (not a torn tail).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        snapshot_bytes: int = SNAPSHOT_BYTES,
        fused_rerank: bool = False,
    ):
        if not isinstance(fused_rerank, bool):
            raise ConfigError(f"fused_rerank must be True or False, got {fused_rerank!r}")
        self.fused_rerank = fused_rerank
        self.data_dir = make_dirs(data_dir, "service data folder")
        self.snapshot_bytes = check_int("snapshot_bytes", snapshot_bytes)
        self._exit = contextlib.ExitStack()
        self._exit.enter_context(
            file_lock(self.data_dir / ".lock", what=f"service data folder {self.data_dir}")
        )
        self._registry = threading.Lock()
        self._collections: dict[str, _Collection] = {}
        self._snapshot_lsn = self._load_snapshot()
        self._wal = WriteAheadLog(self.data_dir / "wal.log")
        replayed = 0
        for record in self._wal.records:
            if record.lsn > self._snapshot_lsn:
                self._apply(record)
                replayed += 1
        self._wal.records = []
        self._wal.advance(self._snapshot_lsn)
        self._snapshotting = threading.Lock()
        logger.info(
            "%s: %d collections, snapshot at lsn %d, %d log records replayed",
            self.data_dir,
            len(self._collections),
            self._snapshot_lsn,
            replayed,
        )

    # ------------------------------------------------------------------ collections
    def _get(self, name: str) -> _Collection:
        with self._registry:
            coll = self._collections.get(name)
        if coll is None:
            raise _missing(name)
        return coll

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[_Collection]:
        """Hold collection `name`'s writer mutex (NotFoundError if it is or gets dropped)."""
        coll = self._get(name)
        with coll.writer:
            if coll.dropped:
                raise _missing(name)
            yield coll

    def create(self, spec: CollectionSpec) -> None:
        spec = check_spec(spec)
        with self._registry:
            if spec.name in self._collections:
                raise ConflictError(
                    f"collection {spec.name!r} already exists; choose another name or delete it "
                    "first"
                )
            self._commit({"op": "create", "spec": spec_to_dict(spec)})
        self._maybe_snapshot()

    def collections(self) -> list[CollectionSpec]:
        with self._registry:
            return [self._collections[n].spec for n in sorted(self._collections)]

    def spec(self, name: str) -> CollectionSpec:
        return self._get(check_name(name)).spec

    def info(self, name: str) -> dict[str, Any]:
        coll = self._get(check_name(name))
        with coll.rw.read():
            return {"spec": coll.spec, "count": coll.count, "memory_bytes": _memory(coll)}

    def drop(self, name: str) -> None:
        coll = self._get(check_name(name))
        with self._registry, coll.writer:
            if coll.dropped:
                raise _missing(name)
            self._commit({"op": "drop", "name": name})
        self._maybe_snapshot()

    # ------------------------------------------------------------------ items
    def add(
        self,
        name: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        payloads: list[dict[str, Any] | None],
    ) -> None:
        with self._writing(check_name(name)) as coll:
            spec = coll.spec
            vectors = as_rows(vectors, spec.dim, "vectors", spec.dtype)
            ids = check_new_ids(ids, len(vectors))
            payloads = list(payloads) if payloads is not None else [None] * len(ids)
            if len(payloads) != len(ids):
                raise InputError(
                    f"got {len(payloads)} payloads for {len(ids)} ids; give one payload (or "
                    "null) per id, or none at all"
                )
            known = coll.rows(ids) >= 0
            if known.any():
                pos = int(np.argmax(known))
                raise ConflictError(
                    f"id {int(ids[pos])} (position {pos}) is already in collection {name!r}; "
                    "delete it first or give a new id (nothing of this batch was stored)"
                )
            blob = ids.astype("<i8").tobytes() + np.ascontiguousarray(vectors).tobytes()
            header = {"op": "add", "name": name, "n": len(ids), "dtype": str(vectors.dtype)}
            if any(p is not None for p in payloads):
                header["payloads"] = payloads
            self._commit(header, blob, coll)
        self._maybe_snapshot()

    def get(self, name: str, item_id: int) -> tuple[np.ndarray, dict[str, Any] | None]:
        coll = self._get(check_name(name))
        ids = as_ids([item_id], "item id")
        with coll.rw.read():
            row = int(coll.rows(ids)[0])
            if row < 0:
                raise NotFoundError(f"no item {int(ids[0])} in collection {name!r}")
            vector = np.asarray(coll.index.store_.vectors[row], dtype=np.float32)
            return vector, coll.payloads.get(int(ids[0]))

    def delete(self, name: str, ids: np.ndarray) -> int:
        with self._writing(check_name(name)) as coll:
            ids = check_delete_ids(ids)
            absent = coll.rows(ids) < 0
            if absent.any():
                pos = int(np.argmax(absent))
                raise NotFoundError(
                    f"no item {int(ids[pos])} (position {pos}) in collection {name!r}; "
                    "nothing was deleted"
                )
            self._commit({"op": "delete", "name": name}, ids.astype("<i8").tobytes(), coll)
        self._maybe_snapshot()
        return len(ids)

    def payloads(self, name: str, ids: np.ndarray) -> list[dict[str, Any] | None]:
        coll = self._get(check_name(name))
        with coll.rw.read():
            return [coll.payloads.get(int(i)) for i in ids]

    def set_tuning(self, name: str, table: dict) -> None:
        """Store a tuned plan table (JSON) with collection `name`, durably."""
        with self._writing(check_name(name)) as coll:
            self._commit({"op": "tune", "name": name, "table": table}, coll=coll)
        self._maybe_snapshot()

    def tuning(self, name: str) -> dict | None:
        """The tuned plan table of collection `name`, or None if it was never tuned."""
        return self._get(check_name(name)).tuning

    def search(self, name: str, queries: np.ndarray, k: int, plan: Plan | None) -> SearchHits:
        coll = self._get(check_name(name))
        with coll.rw.read():
            k = check_search_k(k, coll.count, name)
            plan = resolve_plan(coll.spec, plan, k)
            result = coll.index.search(np.atleast_2d(queries), k, plan)
        stats = {**asdict(result.stats), "seconds": result.stats.seconds}
        return SearchHits(result.ids, result.scores, stats)

    # ------------------------------------------------------------------ log and apply
    def _commit(self, header: dict, blob: bytes = b"", coll: _Collection | None = None) -> None:
        """Log a validated write durably, then apply it (under the collection's write lock)."""
        lsn = self._wal.append(header, blob)
        self._wal.sync(lsn)
        record = Record({**header, "lsn": lsn}, blob)
        if coll is None:
            self._apply(record)
        else:
            with coll.rw.write():
                self._apply(record)

    def _apply(self, record: Record) -> None:
        """Apply a logged write to memory (live after its fsync, or on replay)."""
        h, op = record.header, record.header["op"]
        if op == "create":
            spec = spec_from_dict(h["spec"])
            self._collections[spec.name] = _Collection(spec)
            return
        coll = self._collections.get(h.get("name"))
        if coll is None:
            raise FormatError(
                f"{self._wal.path}: record {record.lsn} ({op}) names collection {h.get('name')!r}, "
                "which does not exist there; the log does not match the snapshot"
            )
        if op == "drop":
            coll.dropped = True
            del self._collections[coll.spec.name]
        elif op == "add":
            n = int(h["n"])
            ids = np.frombuffer(record.blob[: 8 * n], dtype="<i8").astype(np.int64)
            vectors = np.frombuffer(record.blob[8 * n :], dtype=h["dtype"]).reshape(n, -1)
            if coll.index is None:
                index = MatryoshkaIndex(
                    shortlist_dim=coll.spec.shortlist_dim, dtype=coll.spec.dtype
                )
                coll.index = index.build(vectors.copy(), ids).use_fused_rerank(self.fused_rerank)
            else:
                coll.index.add(vectors, ids)
            for i, payload in zip(ids.tolist(), h.get("payloads") or [], strict=False):
                if payload is not None:
                    coll.payloads[i] = payload
        elif op == "tune":
            coll.tuning = h["table"]
        elif op == "delete":
            ids = np.frombuffer(record.blob, dtype="<i8").astype(np.int64)
            coll.index.remove(ids)
            for i in ids.tolist():
                coll.payloads.pop(i, None)
        else:
            raise FormatError(f"{self._wal.path}: record {record.lsn} has unknown op {op!r}")

    # ------------------------------------------------------------------ snapshots
    def _maybe_snapshot(self) -> None:
        if self._wal.size > self.snapshot_bytes and not self._snapshotting.locked():
            threading.Thread(target=self.snapshot, name="mrl-snapshot", daemon=True).start()

    def snapshot(self) -> None:
        """Save every collection and truncate the log (see the module docstring for the order)."""
        with self._snapshotting:
            lsn = self._snapshot_locked()
            if lsn is not None:
                _remove_other_snapshots(self.data_dir / "snapshots", f"{lsn:016d}")
                logger.info("%s: snapshot at lsn %d, log truncated", self.data_dir, lsn)

    def _snapshot_locked(self) -> int | None:
        """Write a snapshot with every writer paused; its lsn, or None when nothing changed."""
        with self._registry, contextlib.ExitStack() as held:
            colls = [self._collections[n] for n in sorted(self._collections)]
            for coll in colls:
                held.enter_context(coll.writer)
            lsn = self._wal.last_lsn
            if lsn == self._snapshot_lsn:
                return None
            root = self.data_dir / "snapshots"
            folder = root / f"{lsn:016d}"
            shutil.rmtree(folder, ignore_errors=True)  # a half-written one from a crash
            make_dirs(folder, "snapshot folder")
            entries = []
            for coll in colls:
                name, saved = coll.spec.name, coll.count > 0
                if saved:
                    coll.index.save(folder / name)
                    pairs = [[i, p] for i, p in coll.payloads.items()]
                    atomic_write_json(folder / f"{name}.payloads.json", pairs)
                entry = {"spec": spec_to_dict(coll.spec), "saved": saved, "tuning": coll.tuning}
                entries.append(entry)
            fsync_dir(folder)
            fsync_dir(root)
            manifest = {
                "format": SNAPSHOT_FORMAT,
                "version": SNAPSHOT_VERSION,
                "lsn": lsn,
                "folder": folder.name,
                "collections": entries,
            }
            atomic_write_json(self.data_dir / "snapshot.json", manifest)
            self._wal.truncate()
            self._snapshot_lsn = lsn
            return lsn

    def _load_snapshot(self) -> int:
        """Load `snapshot.json` and the folder it names; returns the lsn it covers (0: none)."""
        path = self.data_dir / "snapshot.json"
        if not path.exists():
            return 0
        try:
            manifest = json.loads(path.read_text())
        except ValueError:
            raise FormatError(
                f"{path} is not JSON; restore the data folder from a backup"
            ) from None
        check_tag(manifest, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, path, "service snapshot")
        require_keys(manifest, ("lsn", "folder", "collections"), path)
        folder = self.data_dir / "snapshots" / manifest["folder"]
        for entry in manifest["collections"]:
            coll = _Collection(spec_from_dict(entry["spec"]), tuning=entry.get("tuning"))
            if entry["saved"]:
                name = coll.spec.name
                coll.index = MatryoshkaIndex.load(folder / name).use_fused_rerank(self.fused_rerank)
                pairs = json.loads((folder / f"{name}.payloads.json").read_text())
                coll.payloads = {int(i): p for i, p in pairs}
            self._collections[coll.spec.name] = coll
        _remove_other_snapshots(folder.parent, folder.name)
        return int(manifest["lsn"])

    def close(self) -> None:
        """Snapshot (so the next start replays nothing), close the log, release the folder."""
        if not self._wal.closed:
            self.snapshot()
            self._wal.close()
        self._exit.close()


def _missing(name: str) -> NotFoundError:
    return NotFoundError(
        f"no collection {name!r}; create it with POST /v1/collections (GET /v1/collections "
        "lists them)"
    )


def _remove_other_snapshots(root: Path, keep: str) -> None:
    """Delete snapshot folders other than `keep` (older ones, or one a crash left half-written)."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name != keep:
                shutil.rmtree(p, ignore_errors=True)


def _memory(coll: _Collection) -> int:
    """Approximate resident bytes: vectors, ids, tombstones, and the HNSW graph and codes."""
    index = coll.index
    if index is None:
        return 0
    store = index.store_
    graph = index.ann_.ntotal * (4 * index.shortlist_dim + 8 * index.hnsw_m + 16)
    return int(store.vectors.nbytes + store.ids.nbytes + store.live.nbytes + graph)
