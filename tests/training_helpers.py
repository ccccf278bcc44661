"""Shared by the training tests: the cheap digits run and weight comparison."""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mrl.training import TrainConfig

# A tiny MLP on digits: 22 steps per epoch of batch 64, about a second per epoch.
DIGITS_RUN = dict(
    dataset="digits",
    backbone="mlp",
    embed_dim=32,
    min_dim=4,
    epochs=2,
    batch_size=64,
    lr=0.05,
    progress=False,
)


def digits_config(tmp_path, **kw) -> TrainConfig:
    """`DIGITS_RUN` in `tmp_path / "run"`, with any key overridden."""
    return TrainConfig(**{**DIGITS_RUN, "out_dir": str(tmp_path / "run"), **kw})


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Bit-identical state dicts (exact resume, not merely close)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def write_npy(root: Path, train_shape: tuple, test_shape: tuple, classes: int = 4) -> None:
    """A random `npy` dataset in `root`: float32 features of the given shapes, labels i % C."""
    rng = np.random.default_rng(0)
    for split, shape in (("train", train_shape), ("test", test_shape)):
        np.save(root / f"{split}_x.npy", rng.normal(size=shape).astype(np.float32))
        np.save(root / f"{split}_y.npy", np.arange(shape[0]) % classes)
