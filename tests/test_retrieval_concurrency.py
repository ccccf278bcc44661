"""MatryoshkaIndex.save / load across processes: loads never fail beside saves, saves take turns."""

import multiprocessing as mp
import time

import numpy as np

from mrl.retrieval import MatryoshkaIndex

N, D = 2000, 32


def _vectors(version: int) -> tuple[np.ndarray, np.ndarray]:
    """A distinct index per version: ids start at version * N, so a load shows which it read."""
    rng = np.random.default_rng(version)
    return rng.standard_normal((N, D), dtype=np.float32), np.arange(N) + version * N


def _save_loop(folder, first: int, saves: int) -> None:
    for version in range(first, first + saves):
        x, ids = _vectors(version)
        MatryoshkaIndex(shortlist_dim=8, ann="flat").build(x, ids).save(folder)


def _load_loop(folder, seconds: float, failures) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            index = MatryoshkaIndex.load(folder)
            version = int(index.store_.ids[0]) // N
            x, ids = _vectors(version)  # every file of the load comes from that one save
            hit = index.search(x[:3], 1)
            if index.count != N or not np.array_equal(hit.ids[:, 0], ids[:3]):
                failures.put(f"load mixed versions (read version {version})")
        except Exception as e:  # any failed load is the bug under test
            failures.put(f"{type(e).__name__}: {e}")


def test_loads_never_fail_while_two_processes_save(tmp_path):
    folder = tmp_path / "idx"
    _save_loop(folder, 0, 1)
    ctx = mp.get_context("spawn")
    failures = ctx.Queue()
    savers = [ctx.Process(target=_save_loop, args=(folder, 1 + 100 * i, 12)) for i in range(2)]
    loaders = [ctx.Process(target=_load_loop, args=(folder, 4.0, failures)) for _ in range(2)]
    for p in savers + loaders:
        p.start()
    for p in savers + loaders:
        p.join(120)
    assert [p.exitcode for p in savers + loaders] == [0, 0, 0, 0]  # both writers' saves all land
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert errors == []
    last = int(MatryoshkaIndex.load(folder).store_.ids[0]) // N
    assert last in (12, 112)  # the last save of one of the two writers
    assert not list(folder.glob(".staging-*"))
