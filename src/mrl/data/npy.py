"""`load_npy`: a NumPy .npy file, checked before NumPy reads it, with errors that name the file.

NumPy's own messages for a bad .npy do not name the file and some mislead: a text file gets
advice to pass `allow_pickle=True` (which would run arbitrary code), a truncated file a
"cannot reshape" or "mmap length" error. Here the header is read first, so a file that is not
a .npy, holds Python objects, or is shorter than its header says is refused by name, with the
expected and actual sizes. Pickled data is never loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrl.errors import FormatError, MissingPathError, PathError

_MAGIC = np.lib.format.MAGIC_PREFIX
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def npy_header(
    path: str | os.PathLike, fix: str = "write it again with numpy.save(path, array)"
) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file, after checking it is whole.

    Args:
        path: the .npy file.
        fix: what the messages tell the user to do about a damaged file (e.g. the command
            that wrote it).

    Raises:
        MissingPathError: no such file.
        PathError: a folder where a file is needed.
        FormatError: not a .npy file (e.g. text or pickle), a cut header, object dtype, or
            fewer (or more) data bytes than the header's shape and dtype need.
    """
    path = Path(path)
    if path.is_dir():
        raise PathError(f"{path} is a folder; expected a .npy file")
    if not path.exists():
        raise MissingPathError(f"{path} does not exist; expected a .npy file")
    with open(path, "rb") as f:
        magic = f.read(len(_MAGIC) + 2)
        if not magic.startswith(_MAGIC):
            raise FormatError(
                f"{path} is not a NumPy .npy file (it starts with {magic[:8]!r}, not "
                f"{_MAGIC!r}); {fix}"
            )
        version = tuple(magic[len(_MAGIC) :])
        if version not in _HEADER_READERS:
            raise FormatError(f"{path} is a .npy file of unsupported format version {version}")
        try:
            shape, fortran, dtype = _HEADER_READERS[version](f)
        except (ValueError, EOFError) as e:  # a cut or garbled header
            raise FormatError(f"{path} has a damaged .npy header ({e}); {fix}") from None
        offset = f.tell()
    if dtype.hasobject:
        raise FormatError(
            f"{path} holds Python objects (dtype {dtype}), which mrl never unpickles; save a "
            "numeric array (e.g. float32 features, int64 labels)"
        )
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        state = "truncated" if actual < expected else "longer than its header says"
        raise FormatError(
            f"{path} is {state}: its header says shape {shape} {dtype} ({expected} bytes) but "
            f"the file has {actual} bytes; {fix}"
        )
    return tuple(shape), dtype, offset


def load_npy(
    path: str | os.PathLike,
    mmap: bool = False,
    fix: str = "write it again with numpy.save(path, array)",
) -> np.ndarray:
    """A .npy file as an array (memory-mapped read-only with `mmap`), checked by `npy_header`.

    Args:
        path: the .npy file.
        mmap: map it read-only instead of reading it into memory.
        fix: see `npy_header`.

    Raises:
        MissingPathError, PathError, FormatError: see `npy_header`.
    """
    shape, _, _ = npy_header(path, fix)
    mmap = mmap and 0 not in shape  # an empty file region cannot be mapped
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
