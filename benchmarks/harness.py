"""What every benchmark script shares: thread control, the error contract, memory set-up.

Light on purpose (NumPy and the library's error types; faiss only when installed), so a
script that needs no ANN code (the text fine-tunes on a machine without faiss, say) can
still run through it:

- `thread_count(n)`: the block runs with n torch, BLAS and (when installed) faiss threads;
- `run_script(main)`: a named problem (`MrlError`) is one line and exit 2, as `mrl` answers;
- `prefault_memory(gib)`: back memory once, so index builds time their compute only;
- `write_results(out, stem, res, report)`: the raw results as JSON and the report as
  Markdown, each written atomically, and the report printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from mrl.cli.main import one_line
from mrl.errors import ConfigError, MrlError
from mrl.io import atomic_open, atomic_write_json


@contextlib.contextmanager
def thread_count(threads: int):
    """Run the block with `threads` torch, BLAS and faiss (OpenMP) threads, then restore them.

    faiss is optional here: without it (a training-only machine) only torch and BLAS are set.
    """
    try:
        import faiss
    except ImportError:
        faiss = None
    faiss_before = faiss.omp_get_max_threads() if faiss else None
    torch_before = torch.get_num_threads()
    if faiss:
        faiss.omp_set_num_threads(threads)
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        if faiss:
            faiss.omp_set_num_threads(faiss_before)
        torch.set_num_threads(torch_before)


def run_script(main) -> None:
    """Run a benchmark's `main()` as a script: exit with its code (0 for a non-int result);
    a named problem (`MrlError`) is one line on stderr and exit 2, as `mrl` answers it."""
    try:
        code = main()
    except MrlError as e:
        print(f"{Path(sys.argv[0]).name}: error: {one_line(e)}", file=sys.stderr)
        code = 2
    sys.exit(code if isinstance(code, int) else 0)


def write_results(out: Path, stem: str, res: dict, report: str) -> None:
    """`out/<stem>.json` (the raw results) and `out/<stem>.md` (the report), each written
    atomically, then the report printed."""
    atomic_write_json(out / f"{stem}.json", res)
    with atomic_open(out / f"{stem}.md", "w") as f:
        f.write(report)
    print(report)


RETAIN_FREED_MEMORY = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"


def prefault_memory(gib: float, chunk_mib: int = 256) -> float:
    """Write `gib` GiB once, then free it; the seconds that took (0 for `gib` 0).

    Some virtual machines back guest memory lazily: the first write to a page the guest has
    not used, or has handed back after a free, costs tens of microseconds (measured here:
    12 s for 800 MB, against 0.15 s once backed). Which index build pays that depends on
    the allocation history of the run, not on the index, so build times stop comparing.
    Run the benchmark with `GLIBC_TUNABLES=<RETAIN_FREED_MEMORY>` (every allocation from the
    heap, never trimmed: freed memory stays in this process) and this touches the pages
    every later allocation reuses, up to `gib` GiB: builds then pay for their compute only.
    Without that setting glibc hands large blocks back at once and this does nothing useful,
    so it refuses.
    """
    if gib <= 0:
        return 0.0
    if RETAIN_FREED_MEMORY not in os.environ.get("GLIBC_TUNABLES", ""):
        raise ConfigError(
            f"--prefault-gib needs freed memory kept in the process: run with "
            f"GLIBC_TUNABLES={RETAIN_FREED_MEMORY}"
        )
    t0 = time.perf_counter()
    n = max(1, round(gib * 1024 / chunk_mib))
    chunks = [np.ones(chunk_mib << 18, dtype=np.float32) for _ in range(n)]
    del chunks
    return time.perf_counter() - t0
