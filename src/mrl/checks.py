"""Argument checks shared by every layer, each raising a named `mrl.errors` error.

One place for the checks that were written several times: a positive int parameter, k
against what is available, NaN/inf rows (named by row), class-id labels, and the
format/version tag of the files mrl writes.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from mrl.errors import ConfigError, FormatError, InputError

_CHUNK_ROWS = 1 << 16  # rows per chunk when scanning large (memory-mapped) arrays


def check_int(name: str, value: Any, low: int | None = 1, high: int | None = None) -> int:
    """`value` as a Python int within [low, high]; bools, floats and strings are refused.

    Raises:
        ConfigError: naming `name`, the value and the allowed range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if low is not None and value < low:
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be in {low}..{high}, got {value}")
    return value


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """`value` as a finite float within [low, high] (or (low, high] with `low_open`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if not np.isfinite(value) or too_low or (high is not None and value > high):
        lo = "-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{name} must be a finite number in {lo}, {hi}], got {value!r}")
    return value


def check_k(k: Any, available: int | None = None, what: str = "items") -> int:
    """`k` (results per query) as a positive int no larger than the `available` count."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
        raise ConfigError(f"k must be a positive int (results per query), got {k!r}")
    if available is not None and k > available:
        raise ConfigError(f"k={k} exceeds the {available} {what} available; lower k")
    return int(k)


def first_bad_row(x: np.ndarray) -> int | None:
    """Index of the first row of `x` holding a NaN or inf, or None; reads `x` in chunks."""
    if len(x) <= _CHUNK_ROWS and np.isfinite(x).all():  # the usual case, one pass (a query)
        return None
    for start in range(0, len(x), _CHUNK_ROWS):
        block = np.asarray(x[start : start + _CHUNK_ROWS])
        bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if bad.any():
            return start + int(np.argmax(bad))
    return None


def check_finite_rows(x: np.ndarray, what: str = "embeddings", row_offset: int = 0) -> None:
    """Raise `InputError` if `x` holds NaN or inf, naming the first bad row."""
    row = first_bad_row(x)
    if row is not None:
        raise InputError(
            f"{what} contain NaN or inf; first bad row is {row + row_offset} "
            "(clean or drop those rows)"
        )


def check_labels(y: Any, what: str = "labels", num_classes: int | None = None) -> np.ndarray:
    """`y` as a 1-D int64 array of class ids in 0..num_classes-1 (if given).

    Raises:
        InputError: not 1-D, not integers, negative, or >= num_classes.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise InputError(f"{what} must be a 1-D array of class ids, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(
            f"{what} must be integer class ids (int64), got dtype {y.dtype}; float labels "
            "lose precision (float16 holds integers exactly only up to 2048)"
        )
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise InputError(f"{what}: label {y.min()} is negative; class ids start at 0")
    if num_classes is not None and len(y) and y.max() >= num_classes:
        raise InputError(
            f"{what}: label {y.max()} is out of range for {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
    return y


def check_tag(
    obj: Any,
    fmt: str,
    version: int,
    source: object,
    what: str,
    version_key: str = "version",
    error: type[FormatError] = FormatError,
) -> dict:
    """`obj` (a loaded manifest or state dict) if it carries our `format` tag and `version`.

    Args:
        obj: what was read from the file.
        fmt, version: the tag and version this mrl writes and reads.
        source: the file or folder, for the message.
        what: a human name of the thing ("checkpoint", "index").
        version_key: the key holding the version number.
        error: the FormatError subclass to raise (e.g. CheckpointError).

    Raises:
        FormatError (or `error`): not a mapping, another format, or another version.
    """
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise error(f"{source} is not an mrl {what} (no {fmt!r} format tag)")
    if obj.get(version_key) != version:
        raise error(
            f"{source} is an mrl {what} of format version {obj.get(version_key)!r}; this mrl "
            f"reads version {version} (rewrite it with this version)"
        )
    return obj


def require_keys(
    obj: dict,
    keys: tuple[str, ...] | list[str],
    source: object,
    error: type[FormatError] = FormatError,
) -> None:
    """Raise `error` (a FormatError) naming the keys of `keys` missing from manifest `obj`."""
    missing = [k for k in keys if k not in obj]
    if missing:
        raise error(
            f"{source} is missing the key(s) {', '.join(map(repr, missing))}; the file is "
            "damaged or was edited (rewrite it with mrl)"
        )
