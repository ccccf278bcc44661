"""Real servers for the service tests: uvicorn in a thread, or `mrl serve` as a subprocess."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

DIM, NESTING, SHORTLIST_DIM = 16, [4, 8, 16], 4


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """[n, dim] float64 rows rounded to 4 decimals (so JSON round trips are exact in float32)."""
    return np.random.default_rng(seed).standard_normal((n, dim)).round(4)


def collection_body(name: str, **extra) -> dict:
    return {
        "name": name,
        "dim": DIM,
        "nesting": NESTING,
        "shortlist_dim": SHORTLIST_DIM,
        **extra,
    }


def open_backend(name: str, request, tmp_path_factory):
    """A fresh backend of kind `name` (postgres: a new database on the session's server, from
    the `pg_database` fixture of tests/pg_helpers.py, which skips without pgserver)."""
    if name == "memory":
        from mrl.service.memory import MemoryBackend

        return MemoryBackend(tmp_path_factory.mktemp("data"))
    from mrl.service.postgres import PostgresBackend

    return PostgresBackend(dsn=request.getfixturevalue("pg_database"), pool_size=4)


@contextlib.contextmanager
def threaded_server(app):
    """Serve `app` with uvicorn on a free loopback port in a thread; yields the base URL.

    Leaving the block stops the server (which runs the app's shutdown: the backend closes).
    """
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class ServerProcess:
    """`mrl serve` in a subprocess (so the test can SIGKILL it); logs go to `log_path`."""

    def __init__(self, data_dir: Path, *extra: str, log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(data_dir).with_suffix(".log")
        self._log = open(self.log_path, "ab")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mrl.cli.main", "serve", "--data-dir", str(data_dir)]
            + ["--port", str(self.port), "--log-level", "warning", *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mrl serve exited {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"mrl serve did not become ready: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no snapshot, no flush."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def stop(self) -> None:
        """SIGINT: uvicorn's graceful shutdown (the backend snapshots and closes)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._log.close()
