"""Shared by the training tests: the cheap digits run and weight comparison."""

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
