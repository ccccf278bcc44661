"""`reproduce`: train MRL, MRL-E and FF-k, build the SVD / Rand-FS baselines, compare every size.

The paper's Tables 1/2 and Figures 2/3/7 on any dataset `mrl.data` can load, in one call:

1. train one MRL model, one MRL-E model and one FF-k model per nested size k (`head="ff"`,
   `ff_dim=k`), all from the same `TrainConfig` otherwise; a run folder whose training already
   finished is reused (`train(..., resume=True)` returns at once), so a re-run only evaluates;
2. embed train and test splits with each model (`embed_dataset`, cached beside the checkpoint
   and keyed by its SHA-256), test logits included;
3. fit the post-hoc baselines on the largest FF model's train embeddings: SVD (top-k principal
   directions) and Rand-FS (k random coordinates, averaged over `rand_fs_draws` seeds), each
   with a linear probe for top-1, as in the paper;
4. evaluate every method at every size (`evaluate_sizes`) and write the report folder
   (`write_report`): report.md, results.json, and PNGs vs size on a log axis.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrl.checks import check_int
from mrl.data import LabeledDataset, load_dataset
from mrl.errors import ConfigError, FormatError
from mrl.evaluation.baselines import RandomFeatures, SVDProjection
from mrl.evaluation.embed import EmbeddingSet, embed_dataset, load_embeddings
from mrl.evaluation.evaluate import KNN_KS, RETRIEVAL_KS, evaluate_embeddings, evaluate_sizes
from mrl.evaluation.report import write_report
from mrl.io import make_dirs, sha256_file
from mrl.training import TrainConfig, load_model, train
from mrl.training.config import model_changes, parse_overrides, read_yaml, unknown_name_error

log = logging.getLogger(__name__)


@dataclass
class ReproduceConfig:
    """What `reproduce` trains and evaluates.

    Example (the CI-sized setting):
        >>> cfg = ReproduceConfig(train={"dataset": "mnist5k", "backbone": "mlp",
        ...     "embed_dim": 16, "nesting": [2, 4, 8, 16], "epochs": 2})
        >>> cfg.train_config("ff", 4).ff_dim
        4
    """

    # TrainConfig keys shared by every model; head, ff_dim and out_dir are set per method.
    train: dict[str, Any] = field(default_factory=dict)
    runs_dir: str = "runs/reproduce"  # one run folder per model: mrl, mrl-e, ff-<k>
    out_dir: str = "reports/reproduce"  # report.md, results.json, *.png
    rand_fs_draws: int = 3  # Rand-FS seeds averaged (the subset drawn matters at tiny k)
    knn_ks: list[int] = field(default_factory=lambda: list(KNN_KS))  # k-NN accuracy at these k
    retrieval_ks: list[int] = field(default_factory=lambda: list(RETRIEVAL_KS))  # mAP/P/R at k
    embed_batch_size: int = 1024  # forward batch when embedding the splits
    chunk_size: int = 65536  # database rows per k-NN chunk (bounds memory)
    title: str = "MRL vs baselines"  # report.md heading

    def __post_init__(self) -> None:
        if not isinstance(self.train, dict):
            raise ConfigError(f"train must be a mapping of TrainConfig keys, got {self.train!r}")
        for key in ("head", "ff_dim", "out_dir"):
            if key in self.train:
                raise ConfigError(f"train.{key} is set per method by reproduce; remove it")
        for key in ("rand_fs_draws", "embed_batch_size", "chunk_size"):
            check_int(key, getattr(self, key))
        for key in ("knn_ks", "retrieval_ks"):
            if not isinstance(getattr(self, key), (list, tuple)):
                raise ConfigError(f"{key} must be a list of ints, got {getattr(self, key)!r}")
            for k in getattr(self, key):
                check_int(f"{key} entry", k)
        for key in ("runs_dir", "out_dir", "title"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"{key} must be a string, got {getattr(self, key)!r}")
        if 10 not in self.retrieval_ks:
            raise ConfigError(
                f"retrieval_ks must include 10 (mAP@10 is plotted), got {self.retrieval_ks}"
            )
        if 1 not in self.knn_ks:
            raise ConfigError(f"knn_ks must include 1 (1-NN is plotted), got {self.knn_ks}")
        self.train_config("mrl")  # validates the shared training keys now, not mid-run

    def train_config(self, head: str, ff_dim: int | None = None) -> TrainConfig:
        """The `TrainConfig` of one model: the shared keys plus its head and run folder."""
        name = head if ff_dim is None else f"{head}-{ff_dim}"
        values = {**self.train, "head": head, "ff_dim": ff_dim}
        values["out_dir"] = str(Path(self.runs_dir) / name)
        return TrainConfig.from_dict(values)


def load_reproduce_config(
    path: str | os.PathLike | None, overrides: Sequence[str] = ()
) -> ReproduceConfig:
    """A `ReproduceConfig` from YAML, then command-line overrides.

    Training keys are overridden as `--train.KEY=value` or `--train.KEY value` (e.g.
    `--train.epochs 2`); the others by name (`--out_dir reports/x`). Values are parsed as
    YAML; unknown keys are errors that name the nearest.

    Raises:
        MissingPathError: no file at `path`.
        ConfigError: a YAML syntax error (file and line), an unknown key, or a bad value.
    """
    values: dict[str, Any] = dict(read_yaml(path, "reproduce config")) if path is not None else {}
    values["train"] = dict(values.get("train") or {})
    bools = [f"train.{k}" for k, t in typing.get_type_hints(TrainConfig).items() if t is bool]
    for key, value in parse_overrides(overrides, bools):
        if key.startswith("train."):
            values["train"][key.removeprefix("train.")] = value
        else:
            values[key] = value
    names = [f.name for f in dataclasses.fields(ReproduceConfig)]
    for key in values:
        if key not in names:
            raise unknown_name_error(key, names, "reproduce key")
    return ReproduceConfig(**values)


def _train_cached(config: TrainConfig) -> Path:
    """Train (or reuse) one run; a run folder of a config that trains another model is refused.

    Which keys may differ is `model_changes`, the rule `train(..., resume=True)` applies.
    """
    run_dir = Path(config.out_dir)
    saved = run_dir / "config.yaml"
    if saved.exists():
        changed = model_changes(read_yaml(saved, "run config"), config.to_dict())
        if changed:
            raise ConfigError(
                f"{run_dir} holds a run with a different config ({', '.join(changed)}); "
                "delete it or set another runs_dir"
            )
    return Path(train(config, resume=True).run_dir)


def _embed_cached(
    run_dir: Path, config: TrainConfig, batch_size: int, datasets: dict[str, LabeledDataset]
) -> dict[str, EmbeddingSet]:
    """Train and test embeddings (test with logits) of a run, reused while the checkpoint is.

    `datasets` caches the loaded splits across runs (every model sees the same data).
    """
    checkpoint_sha = sha256_file(run_dir / "checkpoint.pt")
    model = None
    out = {}
    for split in ("train", "test"):
        folder = run_dir / "embeddings" / split
        try:
            cached = load_embeddings(folder)
            if cached.manifest.get("checkpoint_sha256") == checkpoint_sha:
                out[split] = cached
                continue
        except (FileNotFoundError, FormatError):  # none yet, or damaged: embed again
            pass
        if model is None:
            model, _ = load_model(run_dir)
        if split not in datasets:
            datasets[split] = load_dataset(
                config.dataset, split, config.data_root, image_size=config.image_size
            )
        info = {
            "model": str(run_dir),
            "checkpoint_sha256": checkpoint_sha,
            "dataset": config.dataset,
            "split": split,
        }
        embed_dataset(
            model,
            datasets[split],
            folder,
            batch_size,
            save_logits=split == "test",
            info=info,
            progress=config.progress,
        )
        out[split] = load_embeddings(folder)
    return out


def _epoch_seconds(run_dir: Path) -> float:
    """Training time of a run as logged (sum of per-epoch `time_s` in metrics.jsonl)."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return float(sum(json.loads(line).get("time_s", 0.0) for line in lines if line.strip()))


def _mean_over_draws(draws: list[dict[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    return {m: {k: float(np.mean([d[m][k] for d in draws])) for k in draws[0][m]} for m in draws[0]}


def reproduce(config: ReproduceConfig) -> Path:
    """Train every model (cached), evaluate MRL, MRL-E, FF, SVD and Rand-FS at every size.

    Returns:
        the path of the written report.md (in `config.out_dir`).

    Raises:
        PathError: `out_dir` or `runs_dir` cannot be a writable folder (before any training).
    """
    t_start = time.perf_counter()
    # Output paths first: a report folder that cannot be written must not cost the training.
    make_dirs(config.out_dir, "report folder")
    make_dirs(config.runs_dir, "runs folder")
    dims = config.train_config("mrl").get_nesting().dims
    models = {"MRL": config.train_config("mrl"), "MRL-E": config.train_config("mrl-e")}
    models.update({f"FF-{k}": config.train_config("ff", k) for k in dims})
    timing: dict[str, float] = {}
    embeddings: dict[str, dict[str, EmbeddingSet]] = {}
    datasets: dict[str, LabeledDataset] = {}
    for name, train_config in models.items():
        t0 = time.perf_counter()
        log.info("training %s -> %s", name, train_config.out_dir)
        run_dir = _train_cached(train_config)
        timing[f"train {name} (this call)"] = time.perf_counter() - t0
        timing[f"train {name} (logged epochs)"] = _epoch_seconds(run_dir)
        t0 = time.perf_counter()
        embeddings[name] = _embed_cached(run_dir, train_config, config.embed_batch_size, datasets)
        timing[f"embed {name}"] = time.perf_counter() - t0

    kw = {
        "knn_ks": config.knn_ks,
        "retrieval_ks": config.retrieval_ks,
        "chunk_size": config.chunk_size,
    }
    t0 = time.perf_counter()
    methods: dict[str, dict[int, dict[str, float]]] = {"FF": {}}
    for k in dims:
        e = embeddings[f"FF-{k}"]
        methods["FF"].update(evaluate_embeddings(e["train"], e["test"], probe=True, **kw))
    for name in ("MRL", "MRL-E"):
        e = embeddings[name]
        methods[name] = evaluate_embeddings(e["train"], e["test"], probe=True, **kw)
    timing["evaluate MRL, MRL-E, FF"] = time.perf_counter() - t0

    # Post-hoc baselines on the largest FF model, which is an ordinary d-dim classifier.
    largest = embeddings[f"FF-{dims[-1]}"]
    train_z, train_y = largest["train"].embeddings, largest["train"].labels
    test_z, test_y = largest["test"].embeddings, largest["test"].labels
    t0 = time.perf_counter()
    svd = SVDProjection().fit(train_z)
    methods["SVD"] = evaluate_sizes(
        svd.transform(train_z), train_y, svd.transform(test_z), test_y, dims, probe=True, **kw
    )
    timing["evaluate SVD"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    draws = []
    for seed in range(config.rand_fs_draws):
        rf = RandomFeatures(seed).fit(train_z)
        draws.append(
            evaluate_sizes(
                rf.transform(train_z), train_y, rf.transform(test_z), test_y, dims, probe=True, **kw
            )
        )
    methods["Rand-FS"] = _mean_over_draws(draws)
    timing["evaluate Rand-FS"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start

    base = config.train_config("mrl")
    results = {
        "methods": methods,
        "setup": {
            "dataset": base.dataset,
            "train / test items": f"{len(train_y)} / {len(test_y)}",
            "backbone": base.backbone,
            "nesting": list(dims),
            "epochs": base.epochs,
            "batch_size": base.batch_size,
            "optimizer": f"{base.optimizer} lr={base.lr} wd={base.weight_decay} {base.schedule}",
            "seed": base.seed,
            "rand_fs_draws": config.rand_fs_draws,
            "runs_dir": config.runs_dir,
            "training_s (logged epochs, all models)": round(
                sum(v for k, v in timing.items() if k.endswith("(logged epochs)")), 1
            ),
            "wall_time_s (this call; a reused run costs no training)": round(timing["total"], 1),
        },
        "notes": [
            "FF is one model per size (FF-k: a classifier on the first k of d dims, trained "
            "alone). SVD and Rand-FS are fitted on the largest FF model's train embeddings "
            f"(Rand-FS averaged over {config.rand_fs_draws} seeds). k-NN and retrieval use "
            "per-prefix L2-normalised embeddings; database = train split, queries = test split.",
        ],
        "timing_s": {k: round(v, 2) for k, v in timing.items()},
        "config": dataclasses.asdict(config),
    }
    return write_report(results, config.out_dir, config.title)
