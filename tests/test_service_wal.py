"""The write-ahead log and `MemoryBackend` durability: torn tails, damage, snapshot crash points,
all-or-nothing batches, concurrent writers."""

import logging
import threading

import numpy as np
import pytest
from service_helpers import DIM, NESTING, SHORTLIST_DIM, vectors

from mrl.errors import (
    ConfigError,
    ConflictError,
    FormatError,
    InputError,
    LockedError,
    NotFoundError,
    UnavailableError,
)
from mrl.retrieval.plans import Rerank
from mrl.service import memory
from mrl.service import wal as wal_module
from mrl.service.backend import CollectionSpec
from mrl.service.memory import MemoryBackend
from mrl.service.wal import MAGIC, WriteAheadLog, encode

SPEC = CollectionSpec("c", DIM, tuple(NESTING), SHORTLIST_DIM)


def crash(backend: MemoryBackend) -> None:
    """Drop a backend as kill -9 would: no snapshot, no close hooks (only the fds are freed).

    A background snapshot in progress is let finish first (kill -9 would stop it anywhere;
    the crash-point tests below stop it at the two points that matter).
    """
    with backend._snapshotting:
        backend._wal.close()
        backend._exit.close()


def write_log(path, n: int) -> None:
    wal = WriteAheadLog(path)
    for i in range(n):
        wal.sync(wal.append({"op": "x", "i": i}, b"blob%d" % i))
    wal.close()


def test_records_round_trip(tmp_path):
    write_log(tmp_path / "wal", 3)
    wal = WriteAheadLog(tmp_path / "wal")
    assert [(r.lsn, r.header["i"], r.blob) for r in wal.records] == [
        (1, 0, b"blob0"),
        (2, 1, b"blob1"),
        (3, 2, b"blob2"),
    ]
    assert wal.append({"op": "x"}) == 4


@pytest.mark.parametrize(
    "damage, kept",
    [
        (lambda data: data[:-3], [0, 1]),  # a torn record body
        (lambda data: data + encode({"op": "x", "lsn": 4})[:5], [0, 1, 2]),  # a torn frame
        (lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]), [0, 1]),  # bad checksum
    ],
    ids=["torn-body", "torn-frame", "bad-checksum"],
)
def test_a_torn_last_record_is_dropped_with_a_warning(tmp_path, caplog, damage, kept):
    path = tmp_path / "wal"
    write_log(path, 3)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING):
        wal = WriteAheadLog(path)
    assert "dropping" in caplog.text and "never acknowledged" in caplog.text
    assert [r.header["i"] for r in wal.records] == kept
    wal.sync(wal.append({"op": "x", "i": 9}))  # appends follow the last good record
    wal.close()
    assert [r.header["i"] for r in WriteAheadLog(path).records] == kept + [9]


def test_a_corrupt_record_before_others_is_damage_not_a_torn_tail(tmp_path):
    path = tmp_path / "wal"
    write_log(path, 3)
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + 12] ^= 0xFF  # inside the first record's body
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="corrupt .* bytes of records follow it"):
        WriteAheadLog(path)


def test_a_foreign_file_is_not_a_log(tmp_path):
    (tmp_path / "wal").write_text("hello, not a log")
    with pytest.raises(FormatError, match="not an mrl write-ahead log"):
        WriteAheadLog(tmp_path / "wal")


# ---------------------------------------------------------------- the backend
def filled(data_dir, n=20, **kwargs) -> MemoryBackend:
    backend = MemoryBackend(data_dir, **kwargs)
    backend.create(SPEC)
    backend.add("c", np.arange(n), vectors(n), [{"i": i} for i in range(n)])
    return backend


def test_state_survives_a_crash_by_replay(tmp_path):
    backend = filled(tmp_path)
    backend.delete("c", np.array([3, 4]))
    crash(backend)
    again = MemoryBackend(tmp_path)
    assert again.info("c")["count"] == 18 and again.spec("c") == again.info("c")["spec"]
    assert again.get("c", 5)[1] == {"i": 5}
    with pytest.raises(NotFoundError):
        again.get("c", 3)
    np.testing.assert_allclose(again.get("c", 7)[0], vectors(20)[7], rtol=1e-6)


def test_a_torn_add_is_never_served(tmp_path, caplog):
    backend = filled(tmp_path)
    backend.add("c", np.array([100, 101]), vectors(2, seed=1), None)
    crash(backend)
    log = tmp_path / "wal.log"
    log.write_bytes(log.read_bytes()[:-10])  # the last add was torn mid-write
    with caplog.at_level(logging.WARNING):
        again = MemoryBackend(tmp_path)
    assert "dropping a torn record" in caplog.text
    assert again.info("c")["count"] == 20
    with pytest.raises(NotFoundError):
        again.get("c", 100)


def test_refused_batches_leave_nothing_behind(tmp_path):
    backend = filled(tmp_path)
    size = backend._wal.size
    with pytest.raises(ConflictError, match="id 5 .* already in collection 'c'"):
        backend.add("c", np.array([50, 5]), vectors(2), None)
    with pytest.raises(InputError, match="NaN"):
        backend.add("c", np.array([50]), np.full((1, DIM), np.nan), None)
    with pytest.raises(NotFoundError, match="no item 99"):
        backend.delete("c", np.array([1, 99]))
    assert backend._wal.size == size and backend.info("c")["count"] == 20
    assert backend.get("c", 1)[1] == {"i": 1}


def test_one_server_per_data_folder(tmp_path):
    backend = MemoryBackend(tmp_path)
    with pytest.raises(LockedError, match="in use by another process"):
        MemoryBackend(tmp_path)
    backend.close()
    MemoryBackend(tmp_path).close()


def test_snapshots_truncate_the_log_and_restore_the_state(tmp_path):
    backend = filled(tmp_path)
    backend.snapshot()
    assert backend._wal.size == len(MAGIC)
    backend.add("c", np.array([200]), vectors(1, seed=3), [{"late": True}])
    crash(backend)
    again = MemoryBackend(tmp_path)
    assert again.info("c")["count"] == 21 and again.get("c", 200)[1] == {"late": True}
    assert len(list((tmp_path / "snapshots").iterdir())) == 1


def test_a_crash_between_snapshot_and_truncation_applies_nothing_twice(tmp_path, monkeypatch):
    backend = filled(tmp_path)

    def killed(self):
        raise SystemExit("killed before the log was truncated")

    monkeypatch.setattr(memory.WriteAheadLog, "truncate", killed)
    with pytest.raises(SystemExit):
        backend.snapshot()
    monkeypatch.undo()
    crash(backend)
    again = MemoryBackend(tmp_path)  # the log still holds every record the snapshot covers
    assert again.info("c")["count"] == 20
    hits = again.search("c", vectors(20)[:2], 1, None)
    assert hits.ids[:, 0].tolist() == [0, 1]


def test_a_crash_before_the_snapshot_manifest_keeps_the_old_state(tmp_path, monkeypatch):
    backend = filled(tmp_path)
    monkeypatch.setattr(memory, "atomic_write_json", _raise_on("snapshot.json"))
    with pytest.raises(SystemExit):
        backend.snapshot()
    monkeypatch.undo()
    crash(backend)
    again = MemoryBackend(tmp_path)
    assert again.info("c")["count"] == 20
    assert not (tmp_path / "snapshot.json").exists()


def _raise_on(name):
    real = memory.atomic_write_json

    def write(path, obj):
        if str(path).endswith(name):
            raise SystemExit("killed before the manifest")
        real(path, obj)

    return write


def test_concurrent_writers_and_readers(tmp_path):
    backend = MemoryBackend(tmp_path, snapshot_bytes=20_000)
    backend.create(SPEC)
    backend.create(CollectionSpec("d", DIM, tuple(NESTING), SHORTLIST_DIM))
    backend.add("c", np.array([10_000]), vectors(1), None)
    errors = []

    def writer(t):
        try:
            for b in range(10):
                ids = np.arange(5) + 100 * t + 5 * b
                backend.add("c" if t % 2 else "d", ids, vectors(5, seed=t * 100 + b), None)
                backend.search("c", vectors(2), 1, None)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    counts = backend.info("c")["count"], backend.info("d")["count"]
    assert counts == (151, 150)
    crash(backend)
    again = MemoryBackend(tmp_path)
    assert (again.info("c")["count"], again.info("d")["count"]) == counts


def test_a_tuned_table_survives_replay_and_snapshots(tmp_path):
    backend = filled(tmp_path)
    backend.set_tuning("c", {"k": 10, "queries": 1, "rows": []})
    crash(backend)
    again = MemoryBackend(tmp_path)
    assert again.tuning("c")["k"] == 10
    again.snapshot()
    crash(again)
    assert MemoryBackend(tmp_path).tuning("c")["k"] == 10


def test_a_failed_fsync_refuses_later_writes(tmp_path, monkeypatch):
    backend = filled(tmp_path)

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(wal_module.os, "fsync", broken)
    with pytest.raises(UnavailableError, match="cannot flush the log"):
        backend.add("c", np.array([300]), vectors(1), None)
    monkeypatch.undo()
    with pytest.raises(UnavailableError, match="writes are refused until the server restarts"):
        backend.add("c", np.array([301]), vectors(1), None)
    assert backend.info("c")["count"] == 20  # the unflushed add was not applied


def test_fused_rerank_backends_answer_as_staged_ones_and_keep_it_over_a_restart(tmp_path):
    plan, q = Rerank(SHORTLIST_DIM, DIM, 30), vectors(5, seed=2)
    staged = filled(tmp_path / "staged", n=300)
    fused = filled(tmp_path / "fused", n=300, fused_rerank=True)
    assert fused._collections["c"].index.fused_bytes == 4 * 300 * DIM
    np.testing.assert_array_equal(
        fused.search("c", q, 10, plan).ids, staged.search("c", q, 10, plan).ids
    )
    fused.add("c", np.arange(300, 310), vectors(10, seed=3), None)  # the copy follows adds
    staged.add("c", np.arange(300, 310), vectors(10, seed=3), None)
    want = staged.search("c", q, 10, plan).ids
    np.testing.assert_array_equal(fused.search("c", q, 10, plan).ids, want)
    fused.close()  # snapshots: the next start loads the index, and fuses it again
    again = MemoryBackend(tmp_path / "fused", fused_rerank=True)
    assert again._collections["c"].index.fused_bytes == 4 * 310 * DIM
    np.testing.assert_array_equal(again.search("c", q, 10, plan).ids, want)
    again.close()
    plain = MemoryBackend(tmp_path / "fused")
    assert plain._collections["c"].index.fused_bytes == 0
    plain.close()
    with pytest.raises(ConfigError, match="fused_rerank must be True or False"):
        MemoryBackend(tmp_path / "other", fused_rerank="yes")
