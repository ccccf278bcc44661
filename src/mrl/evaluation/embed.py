"""Run a trained model over a dataset split and store its representations on disk.

Folder layout written by `embed_dataset` (and read by `load_embeddings`, `mrl eval` and
`mrl cascade`):

    <out>/embeddings.npy  [N, d] float32 or float16, the full d-dim representation
                          (every nested size m is its prefix; take it with `mrl.nesting.truncate`)
    <out>/labels.npy      [N] int64 class ids
    <out>/logits.npy      [G, N, C] float32 head logits, one slice per head size (optional,
                          `save_logits=True`); G and the sizes are the manifest's "dims"
    <out>/manifest.json   {"model", "dataset", "split", "count", "dtype", "embed_dim",
                          "nesting": {"dims", "weights"}, "dims" (head sizes), "num_classes",
                          "files": {...}}

Every .npy is a plain NumPy file, so `np.load(path, mmap_mode="r")` maps it without reading it.
Arrays are filled batch by batch through `np.lib.format.open_memmap` on a temporary name and
renamed into place when complete, and the manifest is written last, so a folder with a manifest
is always whole, even after a crash, and data larger than RAM never has to be held in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mrl.data import BatchLoader, LabeledDataset
from mrl.evaluation import metrics
from mrl.io import atomic_path, atomic_write_json
from mrl.models import MatryoshkaModel
from mrl.nesting import Nesting

log = logging.getLogger(__name__)

EMBEDDINGS, LABELS, LOGITS, MANIFEST = "embeddings.npy", "labels.npy", "logits.npy", "manifest.json"
DTYPES = ("float32", "float16")


@contextlib.contextmanager
def _atomic_memmap(path: Path, shape: tuple[int, ...], dtype: str) -> Iterator[np.memmap]:
    """A writable .npy memmap on a temp name beside `path`, renamed over it on clean exit."""
    with atomic_path(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        yield arr
        arr.flush()
        del arr


@torch.no_grad()
def embed_dataset(
    model: MatryoshkaModel,
    dataset: LabeledDataset,
    out_dir: str | os.PathLike,
    batch_size: int = 512,
    dtype: str = "float32",
    save_logits: bool = False,
    info: dict | None = None,
    progress: bool = True,
) -> Path:
    """Write `model`'s representations (and optionally head logits) of `dataset` to `out_dir`.

    Args:
        model: a trained `MatryoshkaModel` (put in eval mode here).
        dataset: a `LabeledDataset` split; items are written in its order.
        out_dir: folder to create or overwrite (layout in the module docstring).
        batch_size: items per forward pass.
        dtype: "float32" or "float16" for embeddings.npy (logits are always float32).
        save_logits: also write logits.npy [G, N, C] from the model's own heads.
        info: extra manifest fields, e.g. {"model": run_dir, "dataset": name, "split": "test"}.
        progress: show a tqdm bar.

    Returns:
        `out_dir` as a Path.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until rewritten
    model.eval()
    device = next(model.parameters()).device
    n, d, dims = len(dataset), model.nesting.embed_dim, model.head_dims
    num_classes = model.head.num_classes
    loader = BatchLoader(dataset, batch_size)  # dataset order, whole-tensor slices
    with contextlib.ExitStack() as stack:
        z_out = stack.enter_context(_atomic_memmap(out / EMBEDDINGS, (n, d), dtype))
        y_out = stack.enter_context(_atomic_memmap(out / LABELS, (n,), "int64"))
        logit_out = None
        if save_logits:
            shape = (len(dims), n, num_classes)
            logit_out = stack.enter_context(_atomic_memmap(out / LOGITS, shape, "float32"))
        start = 0
        for x, y in tqdm(loader, desc=f"embed {out.name}", disable=not progress, unit="batch"):
            z = model.forward_features(x.to(device))  # (B, d)
            z_np = z.cpu().numpy()
            metrics.check_finite(z_np, "model embeddings", row_offset=start)
            stop = start + len(z)
            z_out[start:stop] = z_np
            y_out[start:stop] = np.asarray(y, dtype=np.int64)
            if logit_out is not None:
                logit_out[:, start:stop] = model.forward_head(z).cpu().numpy()  # (G, B, C)
            start = stop
        if start != n:
            raise ValueError(f"dataset yielded {start} items but reports len() == {n}")
    manifest = {
        "count": n,
        "dtype": dtype,
        "embed_dim": d,
        "nesting": model.nesting.to_dict(),
        "dims": list(dims),
        "num_classes": num_classes,
        "head": model.head.kind,
        "files": {
            "embeddings": EMBEDDINGS,
            "labels": LABELS,
            "logits": LOGITS if save_logits else None,
        },
        **(info or {}),
    }
    atomic_write_json(out / MANIFEST, manifest)
    log.info("wrote %d x %d %s embeddings to %s", n, d, dtype, out)
    return out


@dataclass(frozen=True)
class EmbeddingSet:
    """Embeddings, labels and (optionally) head logits of one split, as written by `embed_dataset`.

    Attributes:
        embeddings: [N, d] (a read-only memmap when loaded with mmap=True).
        labels: [N] int64.
        logits: [G, N, C] float32 or None.
        manifest: the manifest dict.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    logits: np.ndarray | None
    manifest: dict

    @property
    def nesting(self) -> Nesting:
        return Nesting.from_dict(self.manifest["nesting"])

    @property
    def head_dims(self) -> tuple[int, ...]:
        return tuple(self.manifest["dims"])


def load_embeddings(folder: str | os.PathLike, mmap: bool = True) -> EmbeddingSet:
    """Load and validate an `embed_dataset` folder.

    Args:
        folder: the folder holding manifest.json and the .npy files.
        mmap: map embeddings and logits read-only instead of reading them into memory.

    Raises:
        FileNotFoundError: no manifest (missing or incomplete folder).
        ValueError: arrays whose lengths or shapes disagree with each other or the manifest.
    """
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise FileNotFoundError(f"{folder / MANIFEST} not found; run `mrl embed` first")
    manifest = json.loads((folder / MANIFEST).read_text())
    mode = "r" if mmap else None
    z = np.load(folder / manifest["files"]["embeddings"], mmap_mode=mode)
    y = metrics.check_labels(np.load(folder / manifest["files"]["labels"]), "labels.npy")
    metrics.check_same_length(z, y, "embeddings.npy", "labels.npy")
    if z.ndim != 2 or z.shape[1] != manifest["embed_dim"]:
        raise ValueError(
            f"embeddings.npy has shape {z.shape}, manifest says d={manifest['embed_dim']}"
        )
    logits = None
    if manifest["files"].get("logits"):
        logits = np.load(folder / manifest["files"]["logits"], mmap_mode=mode)
        expected = (len(manifest["dims"]), len(y), manifest["num_classes"])
        if logits.shape != expected:
            raise ValueError(
                f"logits.npy has shape {logits.shape}, expected [G, N, C] = {expected}"
            )
    return EmbeddingSet(z, y, logits, manifest)
