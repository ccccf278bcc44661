"""Text DDP: two gloo processes fine-tune like one process with the same global batch.

Run as a script, this file is the torchrun worker: `python tests/test_train_text_ddp.py
CONFIG.json`. The InfoNCE gathers every rank's embeddings, so its in-batch negatives are the
whole global batch, as in one process; the BERT has no dropout (masks drawn per process
would differ by design). Tolerance as in tests/test_ddp.py: float32 rounding of a different
summation order.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mrl.training import TrainConfig, load_model, train

pytest.importorskip("transformers")


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, one_thread):
    import transformers
    from test_ddp import read_metrics
    from text_helpers import text_config, tiny_bert, write_debian

    from mrl.models.text import default_text_model_path

    vocab = len(transformers.AutoTokenizer.from_pretrained(default_text_model_path()))
    model = tiny_bert(tmp_path / "bert", vocab, dropout=0.0)
    data = write_debian(tmp_path / "debian-packages.jsonl.gz")
    base = text_config(
        tmp_path,
        model,
        data,
        "one",
        classification_weight=1.0,
        max_train_examples=64,
        device="cpu",
        n_dims_per_step=2,
    )
    one = train(base)
    config = {**base.to_dict(), "out_dir": str(tmp_path / "two")}
    proc = _torchrun(config, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-8000:]

    ones, twos = read_metrics(one.run_dir), read_metrics(tmp_path / "two")
    assert [m["step"] for m in ones] == [m["step"] for m in twos] == [4, 8]
    for a, b in zip(ones, twos, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        for size in a["mrr10"]:
            assert b["mrr10"][size] == pytest.approx(a["mrr10"][size], abs=0.02)
    wa, wb = (load_model(d)[0].state_dict() for d in (one.run_dir, tmp_path / "two"))
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=0, atol=1e-5)


def _torchrun(config: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """This file as the worker of a 2-process gloo group (as tests/test_ddp.py runs its own)."""
    from test_ddp import free_port

    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={free_port()}", __file__, str(path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


if __name__ == "__main__":
    train(TrainConfig.from_dict(json.loads(Path(sys.argv[1]).read_text())))
