"""Checkpoints: everything a run needs to continue exactly, written atomically.

A checkpoint is a dict saved with `torch.save` through `mrl.io.atomic_torch_save` (temp
file, fsync, rename), so a crash or kill -9 mid-write leaves the previous one intact. It
is read back with `weights_only=True`: loading a checkpoint never runs pickled code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrl.checks import check_tag, require_keys
from mrl.errors import FormatError, MissingPathError
from mrl.io import atomic_torch_save
from mrl.models import MatryoshkaModel, create_model, create_text_model
from mrl.training.config import TrainConfig

CHECKPOINT = "checkpoint.pt"
FORMAT = "mrl-checkpoint"
VERSION = 1


class CheckpointError(FormatError):
    """A checkpoint that is truncated, foreign, or does not match the config resuming it."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write `state` (a dict of tensors and plain values) tagged as ours."""
    atomic_torch_save({"format": FORMAT, "version": VERSION, **state}, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, with a clear error for anything else.

    Raises:
        MissingPathError: nothing at `path`.
        CheckpointError: the file is truncated, corrupt, or not an mrl checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"no checkpoint at {path}; train first or check the path")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        # torch's own message suggests weights_only=False, which would run code from the
        # file: never relay it. What the user needs is that this is not a usable checkpoint.
        raise CheckpointError(
            f"{path} is not an mrl checkpoint, or it is truncated or corrupt ({type(e).__name__} "
            "while reading it); point to a checkpoint.pt written by mrl train, or train again"
        ) from None
    return check_tag(state, FORMAT, VERSION, path, "checkpoint", error=CheckpointError)


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), NumPy and Python RNG states, as weights-only-loadable values."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            **np_state,
            "state": {
                **np_state["state"],
                "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            },
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    # The states may have been loaded onto a GPU (map_location); the setters want CPU bytes.
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    np_state = state["numpy"]
    key = np_state["state"]["key"].cpu().numpy().astype(np.uint32)
    np.random.set_state({**np_state, "state": {**np_state["state"], "key": key}})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def load_model(
    run_dir_or_checkpoint: str | os.PathLike, map_location: Any = "cpu"
) -> tuple[MatryoshkaModel, TrainConfig]:
    """Rebuild a trained model from its run folder (or checkpoint file), in eval mode.

    Works for checkpoints of multi-process runs too: they hold the unwrapped module's weights.
    A text run's model is a `TextEncoder` backbone (`model.backbone.encode(texts)` gives the
    run's vectors) with its head, or none; it is rebuilt from the run's `text_model` folder
    (architecture, tokenizer), which must still be there.

    Args:
        run_dir_or_checkpoint: a run folder holding `checkpoint.pt`, or the file itself.
        map_location: where to load the tensors (as in `torch.load`).

    Returns:
        (model, config): the `MatryoshkaModel` with the trained weights, and its `TrainConfig`.
    """
    path = Path(run_dir_or_checkpoint)
    path = path / CHECKPOINT if path.is_dir() else path
    state = load_checkpoint(path, map_location)
    require_keys(state, ("config", "data", "model"), path, error=CheckpointError)
    config = TrainConfig.from_dict(state["config"])
    data = state["data"]
    if config.is_text:  # the folder of `text_model` gives the architecture and the tokenizer
        model = create_text_model(
            config.text_model,
            config.get_nesting(),
            data["num_classes"] if config.classification_weight > 0 else None,
            config.head,
            config.ff_dim,
            config.max_seq_length,
            config.rotation,
        )
    else:
        model = create_model(
            config.backbone,
            tuple(data["in_shape"]),
            config.get_nesting(),
            data["num_classes"],
            config.head,
            config.ff_dim,
        )
    model.load_state_dict(state["model"])
    return model.to(map_location).eval(), config
