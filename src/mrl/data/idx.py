"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzipped).

Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of
dimensions, then one big-endian uint32 per dimension, then the data in C order.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from mrl.errors import FormatError, MissingPathError, PathError

# IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (`.gz` is decompressed) into an array in native byte order.

    Args:
        path: e.g. `train-images-idx3-ubyte.gz` (shape [N, 28, 28], uint8) or
            `train-labels-idx1-ubyte.gz` (shape [N], uint8).

    Returns:
        The array with the file's shape and dtype (native byte order).

    Raises:
        MissingPathError: no such file.
        PathError: a folder where the file is needed.
        FormatError: not an IDX file, a damaged gzip stream, a cut header, or a body shorter
            or longer than the header's shape says (with both sizes).
    """
    path = Path(path)
    if path.is_dir():
        raise PathError(f"{path} is a folder; expected an IDX file")
    if not path.exists():
        raise MissingPathError(f"{path} does not exist; expected an IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip: not gzipped, or the stream ends early
        kind = "gzipped IDX" if opener is gzip.open else "IDX"
        raise FormatError(
            f"{path} is not a readable {kind} file ({e}); copy or download it again"
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise FormatError(
            f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'none: empty file'})"
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(
            f"{path} has a cut IDX header: {ndim} dimensions need {header} header bytes but "
            f"the file has {len(data)}; copy or download it again"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        state = "truncated" if len(data) - header < expected else "longer than its header says"
        raise FormatError(
            f"{path} is {state}: its header says shape {shape} ({expected} data bytes) but "
            f"{len(data) - header} bytes follow; copy or download it again"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a native-order, writable copy
