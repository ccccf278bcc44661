"""The run folder: claimed (checked, created, locked) for a run, then config and metrics log.

A run folder holds config.yaml, checkpoint.pt, metrics.jsonl and `.lock`. The lock is an
OS file lock (`mrl.io.file_lock`) held by rank 0 for the whole run, so a second run on the
same folder, or `--resume` of a running one, is refused instead of mixing two runs' logs.
The kernel drops it when the process exits, however it exits: it is never stale.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mrl.errors import PathError
from mrl.io import atomic_open, file_lock, make_dirs
from mrl.training.checkpoint import CHECKPOINT
from mrl.training.config import TrainConfig

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
LOCK = ".lock"


class RunExistsError(PathError, FileExistsError):
    """The run folder already holds a checkpoint and the run was not asked to resume."""


@contextlib.contextmanager
def claim_run_dir(out_dir: str | os.PathLike, resume: bool) -> Iterator[Path]:
    """Hold `out_dir` as this run's folder for the `with` block (on rank 0 only).

    Checks, in this order and before any training: the path can be a folder we write
    to; no other process holds it; it holds no checkpoint unless `resume`.

    Raises:
        PathError: `out_dir` is a file, lies under a file, or cannot be written.
        LockedError: another run (or a resume of it) holds the folder.
        RunExistsError: a checkpoint is there and `resume` is False.
    """
    run_dir = make_dirs(out_dir, "run folder")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(run_dir / LOCK, what=f"run folder {run_dir}"))
        except OSError as e:  # LockedError is not an OSError: it passes through
            raise PathError(
                f"cannot write the run folder {run_dir} ({e.strerror or e}); choose another out_dir"
            ) from None
        if (run_dir / CHECKPOINT).exists() and not resume:
            raise RunExistsError(
                f"{run_dir} already holds a checkpoint; resume it (--resume) or choose "
                "another out_dir"
            )
        yield run_dir


def prepare_run_dir(run_dir: Path, config: TrainConfig, state: dict[str, Any] | None) -> None:
    """Write config.yaml; on resume, keep only metrics lines the checkpoint has reached."""
    for stale in run_dir.glob(f".{CHECKPOINT}.*.tmp"):  # left by a kill -9 mid-write
        stale.unlink(missing_ok=True)
    config.to_yaml(run_dir / CONFIG)
    log = run_dir / METRICS
    if state is None:
        log.unlink(missing_ok=True)
        return
    kept = []
    if log.exists():
        for line in log.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut short by a crash
                record = json.loads(line)
                if record["step"] <= state["step"]:
                    kept.append(record)
    if state["metrics"] and (not kept or kept[-1]["step"] < state["step"]):
        kept.append(state["metrics"])  # crashed between the checkpoint and its log line
    with atomic_open(log, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in kept)


def append_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Add one epoch's metrics as a line of metrics.jsonl."""
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(metrics) + "\n")
