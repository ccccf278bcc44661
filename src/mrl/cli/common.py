"""What several `mrl` command modules share: output-path checks, the --nesting spelling."""

from __future__ import annotations

import os
from pathlib import Path

from mrl.errors import ConfigError, PathError
from mrl.nesting import Nesting


def check_out(path: str, role: str, flag: str = "--out") -> Path:
    """`path` as a Path, after checking it can be written as a `role` ("file" or "folder").

    Nothing is created. Run it before any work, so a long command never fails at its end.

    Raises:
        PathError: a folder where a file is wanted (or a file where a folder is), a file
            among its parents, or a nearest existing folder we may not write; the message
            names the flag and the path in the way.
    """
    p = Path(path)
    if role == "file" and p.is_dir():
        raise PathError(f"{flag} {p} is a folder; give a file path (e.g. {p / 'results.json'})")
    if role == "folder" and p.exists() and not p.is_dir():
        raise PathError(f"{flag} {p} is a file; give a folder path")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PathError(f"{flag} {p} lies under the file {parent}; give another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PathError(
                    f"{flag} {p}: the folder {parent} is not writable; give another path"
                )
            break
    return p


def parse_nesting(value: str, flag: str = "--nesting") -> Nesting:
    """ "12,24,48" -> Nesting((12, 24, 48)); a named error for anything else."""
    try:
        return Nesting(tuple(int(x) for x in value.split(",")))
    except ConfigError as e:
        raise ConfigError(f"{flag} {value!r}: {e}") from None
    except ValueError:
        raise ConfigError(
            f"{flag} expects comma-separated ints like 12,24,48, got {value!r}"
        ) from None
