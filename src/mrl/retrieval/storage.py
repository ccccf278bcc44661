"""Storage of the full-dim vectors behind a Matryoshka index: rows, ids, tombstones, prefix reads.

Rows are append-only; `remove` marks a row dead (a tombstone) and `compact` drops dead rows.
A rerank at dim m touches only the first m columns of each candidate row (which matters when
the rows are memory-mapped), and the prefix norms it divides by are computed once per dim.
"""

from __future__ import annotations

import mmap
import numbers
import threading
import warnings

import numpy as np
import torch

from mrl.checks import check_finite_rows, first_bad_row
from mrl.errors import InputError
from mrl.nesting import truncate

STORAGE_DTYPES = ("float32", "float16")
_COPY_ROWS = 1 << 16  # rows per chunk when copying large (memory-mapped) arrays


def unit_prefix(x: np.ndarray, dim: int) -> np.ndarray:
    """Unit-norm `dim`-prefixes of the rows of `x` as a new float32 [n, dim] array.

    `truncate` on a torch view: torch converts float16 and normalises with SIMD and threads,
    several times faster than NumPy's float16 cast and `np.linalg.norm` on this path.
    """
    prefix = truncate(x, dim)  # (n, dim) storage dtype
    if not (prefix.flags.writeable and prefix.flags.c_contiguous):  # torch wants owned memory
        prefix = prefix.copy()
    return truncate(torch.from_numpy(prefix).float(), dim, normalize=True).numpy()


def prefix_norms(x: np.ndarray, dims, block_rows: int = _COPY_ROWS) -> np.ndarray:
    """[n, len(dims)] float32 L2 norms of the `dims`-prefixes (sorted, unique) of `x`'s rows.

    Squares each block once (in float32, also for float16 rows, whose squares overflow)
    and sums it segment by segment between consecutive dims (`np.add.reduceat`), so every
    prefix norm costs one read of the first max(dims) columns, however many dims are asked.
    """
    dims = sorted({int(d) for d in dims})
    out = np.empty((len(x), len(dims)), dtype=np.float32)
    starts = [0] + dims[:-1]
    for start in range(0, len(x), block_rows):
        block = np.asarray(x[start : start + block_rows, : dims[-1]], dtype=np.float32)
        segments = np.add.reduceat(np.square(block), starts, axis=1)  # (b, len(dims))
        np.sqrt(np.cumsum(segments, axis=1), out=out[start : start + len(block)])
    return out


def resident_copy(x: np.ndarray, chunk_rows: int = _COPY_ROWS) -> np.ndarray:
    """A copy of `x` in RAM, on transparent huge pages where the OS offers them (Linux).

    A rerank gathers rows at random, so with 4 KiB pages nearly every row misses the TLB, and
    a memory-mapped file also faults on each page's first touch. At 1M x 2048 float32 a
    64-d row gather took 3,270 ns from a cold memory map, 66 ns from an ordinary array and
    49 ns from huge pages (512-d rows: 441 -> 233 ns). Copies chunk by chunk, so a
    memory-mapped `x` is never read whole into a temporary.
    """
    if x.nbytes == 0 or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.array(x)
    buffer = mmap.mmap(-1, x.nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_HUGEPAGE)
    out = np.frombuffer(buffer, dtype=x.dtype).reshape(x.shape)  # keeps `buffer` alive
    for start in range(0, len(x), chunk_rows):
        out[start : start + chunk_rows] = x[start : start + chunk_rows]
    return out


def as_array(x, what: str) -> np.ndarray:
    """`x` as an ndarray (not copied when it is one); ragged nested lists are a named error."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except ValueError as e:  # "inhomogeneous shape": rows of different lengths
        raise InputError(
            f"{what} are not a rectangular array ({e}); give equal-length rows"
        ) from None


def as_rows(x: np.ndarray, dim: int, what: str, dtype: str | None = None) -> np.ndarray:
    """Check that `x` is a finite, non-empty [n, dim] (or [dim]) float array; return it 2-D.

    Args:
        dtype: cast to this dtype first (no copy when it already is), so values that
            overflow it (float64 beyond float32's range) are caught by the finite check.

    Raises:
        InputError: empty, wrong rank or width, not floating point, or a NaN/inf (the
            message names the first bad row).
    """
    x = as_array(x, what)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise InputError(f"{what} must be [n, {dim}] or [{dim}], got shape {tuple(x.shape)}")
    if x.shape[1] != dim:
        raise InputError(f"{what} have dim {x.shape[1]} but the index has dim {dim}")
    if len(x) == 0:
        raise InputError(f"{what} are empty (shape {tuple(x.shape)}); give at least one row")
    if x.dtype.kind != "f":  # `np.issubdtype(.., np.floating)`, at a tenth of its cost
        raise InputError(f"{what} must be floating point, got dtype {x.dtype}")
    if dtype is None or x.dtype == dtype:
        check_finite_rows(x, what)
        return x
    with np.errstate(over="ignore"):  # an overflow is reported below, by row
        cast = x.astype(dtype)
    row = first_bad_row(cast)
    if row is not None and np.isfinite(x[row]).all():
        raise InputError(
            f"{what} row {row} overflows {dtype} (|x| > {np.finfo(dtype).max:.6g}); rescale "
            "the vectors or store them as float32"
        )
    check_finite_rows(cast, what)
    return cast


_MAX_ID = np.iinfo(np.int64).max


def as_ids(ids, what: str = "ids") -> np.ndarray:
    """`ids` as a 1-D int64 array of ids in 0..2^63-1, or a named `InputError`.

    -1 is the "not found" padding of search results, so negative ids are refused; uint64 ids
    >= 2^63 would wrap negative in int64, and Python ints >= 2^64 or floats are not ids.
    The message names the first bad id and its position.
    """
    arr = ids
    if not isinstance(ids, np.ndarray):
        arr = np.asarray(ids)
        if arr.dtype.kind in "fcO":  # NumPy turns [2**63, 1] into float64: look at the ints
            arr = np.asarray(ids, dtype=object)
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if arr.ndim != 1:
        raise InputError(f"{what} must be a 1-D array of ints, got shape {arr.shape}")
    if arr.dtype == object:  # Python ints beyond int64, floats, or mixed types
        for pos, value in enumerate(arr):
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if not ok or not 0 <= value <= _MAX_ID:
                raise InputError(
                    f"{what}: {value!r} at position {pos} is not an id; ids are ints in "
                    f"0..{_MAX_ID} (2^63-1)"
                )
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        first = f" (first: {arr[0].item()!r} at position 0)" if len(arr) else ""
        raise InputError(f"{what} must be integers, got dtype {arr.dtype}{first}; give int64 ids")
    if arr.dtype == np.uint64 and len(arr) and arr.max() > _MAX_ID:
        pos = int(np.argmax(arr > _MAX_ID))
        raise InputError(
            f"{what}: {int(arr[pos])} at position {pos} is >= 2^63 and would wrap negative in "
            f"int64; ids are ints in 0..{_MAX_ID}"
        )
    arr = arr.astype(np.int64, copy=False)
    if len(arr) and arr.min() < 0:
        pos = int(np.argmax(arr < 0))
        raise InputError(
            f"{what}: {int(arr[pos])} at position {pos} is negative; ids are ints >= 0 "
            "(-1 marks 'not found' in search results)"
        )
    return arr


def check_new_ids(ids, n: int) -> np.ndarray:
    """Validate ids for `n` new rows (see `as_ids`), with no duplicates among themselves."""
    ids = as_ids(ids)
    if ids.shape != (n,):
        raise InputError(f"got {len(ids)} ids for {n} vectors; give one int id per vector")
    order = np.argsort(ids, kind="stable")
    same = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(same):
        pos = int(order[1:][same].min())  # the first position that repeats an earlier id
        raise InputError(
            f"duplicate id {int(ids[pos])} at position {pos} of the added batch; give each "
            "vector its own id"
        )
    return ids


def _as_tensor(vectors: np.ndarray) -> torch.Tensor:
    """A torch view of `vectors` (no copy), read-only memory maps included.

    torch warns that it cannot protect a read-only array from writes; the store only ever
    reads through this view.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(vectors)


class Scratch:
    """Reusable flat buffers, one per dtype, grown on demand (never shrunk).

    One per search call, not per index: concurrent searches must not share buffers.
    """

    def __init__(self) -> None:
        self._buffers: dict[torch.dtype, torch.Tensor] = {}

    def take(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """A flat [n] tensor of `dtype` whose contents are undefined."""
        buffer = self._buffers.get(dtype)
        if buffer is None or buffer.numel() < n:
            buffer = self._buffers[dtype] = torch.empty(n, dtype=dtype)
        return buffer[:n]


class VectorStore:
    """The full vectors [R, D] with their int64 ids and a live mask (False = removed).

    Also keeps, per prefix dim, the L2 norm of every row's prefix (`norms`), so a rerank
    step is one dot product per candidate: the candidate prefix is never normalised.

    Args:
        vectors: [R, D] float32 or float16; a `np.memmap` is kept as is (not copied).
        ids: [R] int64, unique.
        live: [R] bool; defaults to all True.
        norms: {dim: [R] float32 prefix norms} computed earlier (e.g. read from a saved
            index); other dims are computed on first use.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        ids: np.ndarray,
        live: np.ndarray | None = None,
        norms: dict[int, np.ndarray] | None = None,
    ):
        self.vectors = vectors
        self.ids = ids
        self.live = np.ones(len(ids), dtype=bool) if live is None else live
        self._norms: dict[int, np.ndarray] = dict(norms or {})
        self._norms_lock = threading.Lock()  # concurrent searches may fill the cache
        self._spare: dict[object, np.ndarray] = {}  # growth buffers of `append` (see _appended)
        self.generation = -1  # how many times the rows changed (0 once indexed, below)
        self._index_ids()

    def _index_ids(self) -> None:
        # Sorted view of the live ids for O(log R) id -> row lookups without a Python dict;
        # a removed id is forgotten here, so it may be added again. The live count and the
        # faiss bitmap of live rows are kept here too: a search must not recount R rows.
        live = np.flatnonzero(self.live)
        # Every change of the rows passes here: searches prepared for the old rows see it.
        self.generation += 1
        order = np.argsort(self.ids[live], kind="stable")
        self._order = live[order]
        self._sorted_ids = self.ids[self._order]
        self._count = len(live)
        self.live_bitmap = (
            None if self._count == len(self.ids) else np.packbits(self.live, bitorder="little")
        )

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def repeated_live_id(self) -> int | None:
        """An id held by two live rows (possible only in files edited by hand), or None."""
        same = np.flatnonzero(self._sorted_ids[1:] == self._sorted_ids[:-1])
        return int(self._sorted_ids[same[0]]) if len(same) else None

    @property
    def count(self) -> int:
        """Number of live (searchable) vectors."""
        return self._count

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row of each live id; -1 where the id is unknown or removed. [n] int64."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self._sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[pos] == ids, self._order[pos], -1)

    def append(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Append rows (validated by the caller). A memory-mapped store becomes in-memory."""
        known = self.rows_of(ids)
        if (known >= 0).any():
            pos = int(np.argmax(known >= 0))
            raise InputError(
                f"id {int(ids[pos])} at position {pos} is already in the index; remove it "
                "first or give a new id"
            )
        vectors = vectors.astype(self.vectors.dtype, copy=False)
        with self._norms_lock:
            self._norms = {
                d: self._appended(d, n, prefix_norms(vectors, [d])[:, 0])
                for d, n in self._norms.items()
            }
        self.vectors = self._appended("vectors", self.vectors, vectors)
        self.ids = self._appended("ids", self.ids, ids)
        self.live = self._appended("live", self.live, np.ones(len(ids), dtype=bool))
        self._index_ids()

    def _appended(self, key: object, current: np.ndarray, extra: np.ndarray) -> np.ndarray:
        """`current` followed by `extra`, as the leading rows of a buffer with spare rows.

        A service adds a few rows at a time; concatenating would copy the whole store on every
        add (O(N) each, O(N^2) in all). The buffer grows by an eighth when full, so each row
        is copied a bounded number of times for at most 12.5% of spare memory. Views handed
        out earlier stay valid: rows past their end are written, never theirs.
        """
        n, k = len(current), len(extra)
        buf = self._spare.get(key)
        if buf is None or current.base is not buf or len(buf) < n + k:
            buf = np.empty((n + k + max(k, n // 8, 16), *current.shape[1:]), current.dtype)
            buf[:n] = current
            self._spare[key] = buf
        buf[n : n + k] = extra
        return buf[: n + k]

    def kill(self, ids: np.ndarray) -> np.ndarray:
        """Mark the rows of `ids` dead; every id must be live. Returns their rows."""
        ids = as_ids(ids, "ids to remove")
        rows = self.rows_of(ids)
        if (rows < 0).any():
            pos = int(np.argmax(rows < 0))
            raise InputError(
                f"cannot remove id {int(ids[pos])} (position {pos}): it is not in the index"
            )
        if len(np.unique(ids)) != len(ids):
            raise InputError("remove() got the same id twice; give each id once")
        self.live[rows] = False
        self._index_ids()
        return rows

    def compact(self) -> None:
        """Drop dead rows (materialises the kept rows in memory)."""
        keep = np.flatnonzero(self.live)
        self._spare.clear()  # the kept rows are new arrays; a later add grows afresh
        with self._norms_lock:
            self._norms = {d: n[keep] for d, n in self._norms.items()}
        self.vectors = np.ascontiguousarray(self.vectors[keep])
        self.ids = self.ids[keep]
        self.live = np.ones(len(keep), dtype=bool)
        self._index_ids()

    def norms(self, dim: int) -> np.ndarray:
        """[R] float32 L2 norms of every row's `dim`-prefix (computed once, then cached)."""
        norms = self._norms.get(dim)
        if norms is None:
            with self._norms_lock:
                norms = self._norms.get(dim)
                if norms is None:
                    norms = self._norms[dim] = prefix_norms(self.vectors, [dim])[:, 0]
        return norms

    def cache_norms(self, dims) -> None:
        """Compute the prefix norms of `dims` (those not cached yet) in one pass over the rows."""
        with self._norms_lock:
            todo = sorted({int(d) for d in dims} - set(self._norms))
            if todo:
                table = prefix_norms(self.vectors, todo)
                self._norms.update({d: table[:, j].copy() for j, d in enumerate(todo)})

    @property
    def cached_norms(self) -> dict[int, np.ndarray]:
        """The prefix norms computed so far, {dim: [R] float32} (what a save writes)."""
        with self._norms_lock:
            return dict(self._norms)

    def gather(self, rows: np.ndarray, dim: int, scratch: Scratch | None = None) -> torch.Tensor:
        """Raw `dim`-prefixes of the given rows as float32 [*rows.shape, dim] (not normalised).

        Reads only the first `dim` columns of each row. `torch.index_select` copies with two
        threads into `scratch`'s reused buffers: a fresh output page-faults on every write,
        which made the gather 3x slower at 1M x 2048 (and NumPy's float16 cast is 10x slower
        than torch's). The result is a view into `scratch`, valid until its next use.
        """
        scratch = Scratch() if scratch is None else scratch
        index = torch.from_numpy(np.ascontiguousarray(rows.reshape(-1), dtype=np.int64))
        n = index.numel()
        source = _as_tensor(self.vectors)[:, :dim]
        out = scratch.take(n * dim, torch.float32).view(n, dim)
        if source.dtype == torch.float32:
            torch.index_select(source, 0, index, out=out)
        else:
            raw = scratch.take(n * dim, source.dtype).view(n, dim)
            torch.index_select(source, 0, index, out=raw)
            out.copy_(raw)
        return out.view(*rows.shape, dim)

    def prefix(self, rows: np.ndarray, dim: int) -> np.ndarray:
        """Unit-norm `dim`-prefixes of the given rows, float32 [*rows.shape, dim]."""
        flat = truncate(self.vectors, dim)[rows.reshape(-1)]  # (n, dim)
        return unit_prefix(flat, dim).reshape(*rows.shape, dim)

    def blocks(self, dim: int, block_rows: int):
        """Yield (start, unit-norm float32 [b, dim] prefixes) over all rows, block by block."""
        for start in range(0, self.n_rows, block_rows):
            yield start, unit_prefix(self.vectors[start : start + block_rows], dim)
