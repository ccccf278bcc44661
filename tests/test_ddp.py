"""DDP: two gloo processes on the CPU train like one process with the same global batch.

Run as a script, this file is the torchrun worker: `python tests/test_ddp.py CONFIG.json`.

Tolerance: the per-process gradients are averaged by an all-reduce, which sums in a
different order than one process's batch mean, so results differ by float32 rounding
(measured: ~1e-7 on weights and losses after 44 steps). We allow 1e-5 (relative on
losses, absolute on weights) and at most one flipped test prediction (1/360) per size. The
backbone has no BatchNorm: per-process batch statistics would differ by design (and
SyncBatchNorm has no CPU kernel).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from training_helpers import DIGITS_RUN

from mrl.errors import MrlError
from mrl.io import file_lock
from mrl.models import BACKBONES
from mrl.training import TrainConfig, load_model, train

pytestmark = pytest.mark.usefixtures("one_thread")


def bn_free_mlp(in_shape, embed_dim):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(int(np.prod(in_shape)), 64), nn.ReLU(), nn.Linear(64, embed_dim)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(config: dict, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run this file as the worker of a 2-process gloo group on `config`."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        __file__,
        str(config_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKBONES, "mlp-nobn", bn_free_mlp)
    base = {**DIGITS_RUN, "backbone": "mlp-nobn", "device": "cpu"}
    one = train(TrainConfig(**base, out_dir=str(tmp_path / "one")))

    proc = torchrun({**base, "out_dir": str(tmp_path / "two")}, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-8000:]

    ones, twos = read_metrics(one.run_dir), read_metrics(tmp_path / "two")
    assert [m["step"] for m in ones] == [m["step"] for m in twos] == [22, 44]
    for a, b in zip(ones, twos, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-5)
        for size in a["top1"]:
            assert abs(a["top1"][size] - b["top1"][size]) <= 1 / 360 + 1e-9
    wa, wb = (load_model(d)[0].state_dict() for d in (one.run_dir, tmp_path / "two"))
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_a_locked_run_folder_stops_every_rank(tmp_path):
    """Rank 0 is refused the lock; rank 1 must raise the same error, not wait forever."""
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    with file_lock(run_dir / ".lock"):  # this test process holds the run folder
        proc = torchrun({**DIGITS_RUN, "device": "cpu", "out_dir": str(run_dir)}, tmp_path, 120)
    assert proc.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank}: LockedError: run folder {run_dir} is in use" in proc.stdout, (
            proc.stdout + proc.stderr[-4000:]
        )
    assert not (run_dir / "checkpoint.pt").exists()


if __name__ == "__main__":
    BACKBONES["mlp-nobn"] = bn_free_mlp
    try:
        train(TrainConfig.from_dict(json.loads(Path(sys.argv[1]).read_text())))
    except MrlError as e:
        print(f"rank {os.environ['RANK']}: {type(e).__name__}: {e}", flush=True)
        sys.exit(2)
