"""The error contract: every problem a user can fix is an `MrlError` that names it and the fix.

The CLI prints any `MrlError` as one line and exits 2; the library raises the most precise
subclass. Each subclass also derives from the built-in exception a caller would catch
without knowing mrl (`ValueError` for a bad value, `FileNotFoundError` for a missing path),
so `except ValueError` keeps working.
"""

from __future__ import annotations


class MrlError(Exception):
    """Base of every error mrl raises for bad input, a bad file, or a busy resource."""


class ConfigError(MrlError, ValueError):
    """A parameter or config value of the wrong type or outside its range."""


class InputError(MrlError, ValueError):
    """Data that cannot be used as given: wrong shape, NaN/inf, bad labels or ids, empty."""


class FormatError(MrlError, ValueError):
    """A file or folder that is not ours, truncated, corrupt, or disagrees with its manifest."""


class PathError(MrlError, ValueError):
    """A path that cannot serve its role: a file where a folder is needed, not writable, ..."""


class MissingPathError(MrlError, FileNotFoundError):
    """A file or folder that should exist and does not."""


class LockedError(MrlError, RuntimeError):
    """Another process holds the lock on a run folder or an index folder."""


class NotFittedError(MrlError, ValueError, AttributeError):
    """An estimator (cascade, probe, tuner) used before `fit`; the bases match scikit-learn's."""


class NotFoundError(MrlError, KeyError):
    """A named thing (a collection, an item id) that does not exist; HTTP 404 in the service."""

    def __str__(self) -> str:  # KeyError would quote the message; show it as written
        return str(self.args[0]) if self.args else ""


class ConflictError(MrlError, ValueError):
    """A create or add that clashes with what exists (a collection name, an id); HTTP 409."""


class UnavailableError(MrlError, ConnectionError):
    """A backend (the database) cannot be reached now; retry later. HTTP 503 in the service."""
