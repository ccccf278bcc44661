"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzipped).

Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of
dimensions, then one big-endian uint32 per dimension, then the data in C order.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

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
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes) but {len(data) - header} bytes follow"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a native-order, writable copy
