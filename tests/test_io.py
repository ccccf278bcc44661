"""mrl.io: versioned folders (readers see one whole version, writers take turns) and locks."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest

from mrl.errors import FormatError, LockedError, MissingPathError, PathError
from mrl.io import atomic_dir_commit, current_version_dir, file_lock, read_version


def _listing(root):
    """What a user sees in the folder: CURRENT and version folders (locks are hidden)."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def _commit(root, text, **kwargs):
    with atomic_dir_commit(root, **kwargs) as d:
        (d / "a.txt").write_text(text)
        (d / "b.txt").write_text(text)


def test_commit_replaces_version_and_cleans_up(tmp_path):
    root = tmp_path / "store"
    _commit(root, "one")
    first = current_version_dir(root)
    _commit(root, "two")
    second = current_version_dir(root)
    assert second != first and (second / "a.txt").read_text() == "two"
    assert _listing(root) == ["CURRENT", second.name]
    assert sorted(p.name for p in (root / ".locks").iterdir()) == ["write"]


def test_failed_commit_keeps_old_version(tmp_path):
    root = tmp_path / "store"
    _commit(root, "one")
    with pytest.raises(RuntimeError), atomic_dir_commit(root) as d:
        (d / "a.txt").write_text("half")
        raise RuntimeError("crash")
    assert (current_version_dir(root) / "a.txt").read_text() == "one"
    assert _listing(root) == ["CURRENT", "v000001"]


def test_first_commit_failing_leaves_no_version(tmp_path):
    root = tmp_path / "store"
    with pytest.raises(RuntimeError), atomic_dir_commit(root):
        raise RuntimeError("crash")
    with pytest.raises(FormatError, match="no CURRENT file"):
        current_version_dir(root)


def test_bad_pointer(tmp_path):
    (tmp_path / "CURRENT").write_text("../../etc\n")
    with pytest.raises(FormatError, match="not a version folder"):
        current_version_dir(tmp_path)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda p: p, MissingPathError, "no such folder"),
        (lambda p: (p.write_text("x"), p)[1], PathError, "is a file"),
    ],
)
def test_read_of_a_missing_folder_or_a_file_is_named(tmp_path, make, error, message):
    with pytest.raises(error, match=message), read_version(make(tmp_path / "idx")):
        pass


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p.write_text("x"), p)[1], "is a file"),
        (lambda p: (p.write_text("x"), p / "sub")[1], "sub as the index folder: .*idx is a file"),
        (lambda p: (p.mkdir(), (p / "mine.txt").write_text("x"), p)[2], "not empty"),
    ],
)
def test_commit_to_a_path_that_cannot_be_a_version_folder_is_named(tmp_path, make, message):
    with pytest.raises(PathError, match=message), atomic_dir_commit(make(tmp_path / "idx")):
        pass


def test_a_version_being_read_survives_a_commit_and_is_pruned_later(tmp_path):
    root = tmp_path / "store"
    _commit(root, "one")
    with read_version(root) as held:
        _commit(root, "two")
        assert (held / "a.txt").read_text() == "one"  # not deleted under the reader
    assert _listing(root) == ["CURRENT", held.name, "v000002"]
    _commit(root, "three")
    assert _listing(root) == ["CURRENT", "v000003"]


def test_staging_folders_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    root = tmp_path / "store"
    _commit(root, "one")
    (root / ".staging-killed").mkdir()
    (root / ".staging-killed" / "vectors.npy").write_bytes(b"x" * 1000)
    _commit(root, "two")
    assert not (root / ".staging-killed").exists()


def test_a_second_writer_waits_then_refuses_by_name(tmp_path):
    root = tmp_path / "store"
    _commit(root, "one")
    with atomic_dir_commit(root) as d:
        (d / "a.txt").write_text("two")
        with pytest.raises(LockedError, match="in use by another process"):
            _commit(root, "other", lock_timeout=0.05)
    assert (current_version_dir(root) / "a.txt").read_text() == "two"


def _write_loop(root, n):
    for i in range(n):
        _commit(root, f"{os.getpid()}-{i}" * 1000)


def _read_loop(root, seconds, failures):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with read_version(root) as v:
                if (v / "a.txt").read_text() != (v / "b.txt").read_text():
                    failures.put("mixed versions")
        except Exception as e:  # any failure of a reader is the bug under test
            failures.put(f"{type(e).__name__}: {e}")


def test_readers_never_fail_during_concurrent_writers(tmp_path):
    root = tmp_path / "store"
    _commit(root, "start")
    ctx = mp.get_context("spawn")
    failures = ctx.Queue()
    writers = [ctx.Process(target=_write_loop, args=(root, 40)) for _ in range(2)]
    readers = [ctx.Process(target=_read_loop, args=(root, 3.0, failures)) for _ in range(2)]
    for p in writers + readers:
        p.start()
    for p in writers + readers:
        p.join(60)
        assert p.exitcode == 0
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert errors == []
    assert (current_version_dir(root) / "a.txt").read_text().endswith("-39")
    _commit(root, "after")  # versions still read at the last commit go with the next one
    assert _listing(root) == ["CURRENT", current_version_dir(root).name]


def test_lock_names_the_holder_and_is_released_when_the_holder_is_killed(tmp_path):
    lock = tmp_path / ".lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from mrl.io import file_lock\nwith file_lock({str(lock)!r}):\n"
            "    print('held', flush=True)\n    import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockedError, match=rf"run folder x is in use .*process {holder.pid}"):
        with file_lock(lock, what="run folder x"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with file_lock(lock, what="run folder x") as held:
        assert held


def test_a_save_killed_mid_write_leaves_the_old_version_and_no_staging(tmp_path):
    root = tmp_path / "store"
    _commit(root, "one")
    saver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from mrl.io import atomic_dir_commit\nwith atomic_dir_commit({str(root)!r}) as d:\n"
            "    (d / 'a.txt').write_text('half' * 100000)\n    print('staged', flush=True)\n"
            "    import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert saver.stdout.readline().strip() == "staged"
    saver.send_signal(signal.SIGKILL)
    saver.wait()
    assert len(list(root.glob(".staging-*"))) == 1  # what kill -9 leaves behind
    with read_version(root) as v:
        assert (v / "a.txt").read_text() == "one"
    _commit(root, "two")  # the killed writer's lock died with it; its staging goes now
    assert not list(root.glob(".staging-*"))
    assert _listing(root) == ["CURRENT", "v000002"]
