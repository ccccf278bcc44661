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
The manifest is data too: `load_embeddings` checks each of its fields against the .npy files
(shape, dtype, count, sizes) and refuses a folder whose manifest was edited or mixed from two
runs, naming the field and both values.
Arrays are filled batch by batch through `np.lib.format.open_memmap` on a temporary name and
renamed into place when complete, and the manifest is written last, so a folder with a manifest
is always whole, even after a crash, and data larger than RAM never has to be held in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mrl.checks import check_finite_rows, check_int, check_labels, require_keys
from mrl.data import BatchLoader, LabeledDataset
from mrl.data.npy import load_npy, npy_header
from mrl.errors import ConfigError, FormatError, InputError, MissingPathError, PathError
from mrl.evaluation import metrics
from mrl.io import atomic_npy, atomic_write_json, make_dirs
from mrl.models import MatryoshkaModel
from mrl.models.text import TextEncoder
from mrl.nesting import Nesting, check_nesting

log = logging.getLogger(__name__)

EMBEDDINGS, LABELS, LOGITS, MANIFEST = "embeddings.npy", "labels.npy", "logits.npy", "manifest.json"
DTYPES = ("float32", "float16")
RERUN = "run `mrl embed` again"  # the fix for a damaged or edited embeddings folder
FILES = {"embeddings": EMBEDDINGS, "labels": LABELS, "logits": LOGITS}  # manifest "files"
MANIFEST_KEYS = ("count", "dtype", "embed_dim", "nesting", "dims", "num_classes", "files")


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

    Raises:
        ConfigError: an unknown dtype or a batch_size that is not a positive int.
        PathError: `out_dir` is a file, lies under one, or cannot be created.
        InputError: the model produced NaN/inf embeddings (naming the first bad row).
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    batch_size = check_int("batch_size", batch_size)
    out = make_dirs(out_dir, "embeddings folder")
    (out / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until rewritten
    model.eval()
    device = next(model.parameters()).device
    n, d, dims = len(dataset), model.nesting.embed_dim, model.head_dims
    num_classes = model.head.num_classes
    loader = BatchLoader(dataset, batch_size)  # dataset order, whole-tensor slices
    with contextlib.ExitStack() as stack:
        z_out = stack.enter_context(atomic_npy(out / EMBEDDINGS, (n, d), dtype))
        y_out = stack.enter_context(atomic_npy(out / LABELS, (n,), "int64"))
        logit_out = None
        if save_logits:
            shape = (len(dims), n, num_classes)
            logit_out = stack.enter_context(atomic_npy(out / LOGITS, shape, "float32"))
        start = 0
        for x, y in tqdm(loader, desc=f"embed {out.name}", disable=not progress, unit="batch"):
            z = model.forward_features(x.to(device))  # (B, d)
            z_np = z.cpu().numpy()
            check_finite_rows(z_np, "model embeddings", row_offset=start)
            stop = start + len(z)
            z_out[start:stop] = z_np
            y_out[start:stop] = np.asarray(y, dtype=np.int64)
            if logit_out is not None:
                logit_out[:, start:stop] = model.forward_head(z).cpu().numpy()  # (G, B, C)
            start = stop
        if start != n:
            raise InputError(f"dataset yielded {start} items but reports len() == {n}")
    manifest = embeddings_manifest(
        n, dtype, model.nesting, dims, num_classes, model.head.kind, True, save_logits, info
    )
    atomic_write_json(out / MANIFEST, manifest)
    log.info("wrote %d x %d %s embeddings to %s", n, d, dtype, out)
    return out


def embeddings_manifest(
    count: int,
    dtype: str,
    nesting: Nesting,
    dims: tuple[int, ...] | list[int],
    num_classes: int | None,
    head: str | None,
    has_labels: bool,
    has_logits: bool,
    info: dict | None = None,
) -> dict:
    """The manifest.json of an embeddings folder: one definition for every writer.

    Args:
        count, dtype: rows and storage dtype of embeddings.npy.
        nesting: the representation's nesting (its last size is the width).
        dims: the head sizes (the nesting when there are no heads).
        num_classes: classes of the labels, or None for a folder without labels.
        head: the head kind ("mrl", "mrl-e", "ff") or None (an encoder or an adaptor).
        has_labels, has_logits: which of labels.npy and logits.npy the folder holds.
        info: extra fields (model, dataset, split, source, ...).
    """
    return {
        "count": count,
        "dtype": dtype,
        "embed_dim": nesting.embed_dim,
        "nesting": nesting.to_dict(),
        "dims": list(dims),
        "num_classes": num_classes,
        "head": head,
        "files": {
            "embeddings": EMBEDDINGS,
            "labels": LABELS if has_labels else None,
            "logits": LOGITS if has_logits else None,
        },
        **(info or {}),
    }


def embed_texts(
    encoder: TextEncoder,
    texts: list[str],
    out_dir: str | os.PathLike,
    nesting: Nesting | None = None,
    labels: np.ndarray | None = None,
    batch_size: int = 64,
    dtype: str = "float32",
    info: dict | None = None,
    progress: bool = True,
) -> Path:
    """Write a text encoder's embeddings of `texts` (and their labels) as an embeddings folder.

    The same layout as `embed_dataset` (read by `mrl eval`, `mrl index build`, `mrl adapt`),
    with no logits: a bare encoder has no heads.

    Args:
        encoder: a `TextEncoder`.
        texts: the strings, in the order rows are written.
        out_dir: folder to create or overwrite.
        nesting: the encoder's nested sizes (default: halving of its width down to 8).
        labels: [N] class ids, or None for a folder without labels.
        batch_size, dtype, info, progress: as `embed_dataset`.

    Raises:
        ConfigError: dtype, batch_size, or a nesting that does not end at the encoder's width.
        InputError: labels of another length than the texts, or not class ids; bad texts.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    nesting = Nesting.halving(encoder.embed_dim) if nesting is None else check_nesting(nesting)
    nesting.check_embed_dim(encoder.embed_dim)
    if labels is not None:
        labels = check_labels(labels, "labels")
        metrics.check_same_length(texts, labels, "texts", "labels")
    out = make_dirs(out_dir, "embeddings folder")
    (out / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until rewritten
    z = encoder.encode(texts, batch_size=batch_size, progress=progress)  # (N, d) float32
    check_finite_rows(z, "text embeddings")
    with atomic_npy(out / EMBEDDINGS, z.shape, dtype) as z_out:
        z_out[:] = z
    if labels is not None:
        with atomic_npy(out / LABELS, labels.shape, "int64") as y_out:
            y_out[:] = labels
    else:
        (out / LABELS).unlink(missing_ok=True)  # a stale one would pair with other vectors
    num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else None
    manifest = embeddings_manifest(
        len(z), dtype, nesting, nesting.dims, num_classes, None, labels is not None, False, info
    )
    atomic_write_json(out / MANIFEST, manifest)
    log.info("wrote %d x %d %s text embeddings to %s", len(z), z.shape[1], dtype, out)
    return out


@dataclass(frozen=True)
class EmbeddingSet:
    """Embeddings, labels and (optionally) head logits of one split, as written by `embed_dataset`.

    Attributes:
        embeddings: [N, d] (a read-only memmap when loaded with mmap=True).
        labels: [N] int64, or None for a folder written without labels.
        logits: [G, N, C] float32 or None.
        manifest: the manifest dict.
    """

    embeddings: np.ndarray
    labels: np.ndarray | None
    logits: np.ndarray | None
    manifest: dict

    def require_labels(self, purpose: str) -> np.ndarray:
        """The labels, or a named error saying that `purpose` needs a folder with labels."""
        if self.labels is None:
            raise InputError(
                f"{self.manifest.get('source') or 'this embeddings folder'} has no labels; "
                f"{purpose} needs them (write the folder with labels)"
            )
        return self.labels

    @property
    def nesting(self) -> Nesting:
        return Nesting.from_dict(self.manifest["nesting"])

    @property
    def head_dims(self) -> tuple[int, ...]:
        return tuple(self.manifest["dims"])


def load_embeddings(folder: str | os.PathLike, mmap: bool = True) -> EmbeddingSet:
    """Load an `embed_dataset` folder after checking its manifest against its files.

    Every manifest field is checked against what the .npy headers say (no data is read for
    that): count, dtype and embed_dim against embeddings.npy, count against labels.npy,
    dims and num_classes against logits.npy, the nesting against embed_dim and dims.

    Args:
        folder: the folder holding manifest.json and the .npy files.
        mmap: map embeddings and logits read-only instead of reading them into memory.

    Raises:
        MissingPathError: no folder, no manifest (missing or incomplete folder), or a file
            the manifest lists is missing.
        PathError: `folder` is a file.
        FormatError: a manifest that is not JSON, lacks a key, or disagrees with the files
            (naming the field and both values); a truncated or foreign .npy file.
        InputError: labels that are not class ids in 0..num_classes-1.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if folder.exists() and not folder.is_dir():
        raise PathError(f"{folder} is a file; give the folder `mrl embed --out` wrote")
    if not path.is_file():
        raise MissingPathError(f"{path} not found; run `mrl embed` first")
    manifest = _read_manifest(path)
    files = manifest["files"]
    headers = {}  # file key -> (shape, dtype) from the .npy header
    for key, name in FILES.items():
        if key == "embeddings" or files.get(key) is not None:
            if files.get(key) != name:
                raise FormatError(f"{path}: files.{key} is {files.get(key)!r}, expected {name!r}")
            if not (folder / name).is_file():
                raise MissingPathError(f"{folder / name} is missing; {RERUN}")
            headers[key] = npy_header(folder / name, RERUN)[:2]
    _check_manifest_against_files(manifest, headers, path)
    z = load_npy(folder / EMBEDDINGS, mmap, RERUN)
    y = None
    if "labels" in headers:
        y = load_npy(folder / LABELS, False, RERUN)
        y = check_labels(y, str(folder / LABELS), manifest["num_classes"])
    logits = load_npy(folder / LOGITS, mmap, RERUN) if "logits" in headers else None
    return EmbeddingSet(z, y, logits, manifest)


def _read_manifest(path: Path) -> dict:
    """The manifest dict, with every key `load_embeddings` relies on present and well typed."""
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" (line {e.lineno}: {e.msg})" if isinstance(e, json.JSONDecodeError) else ""
        raise FormatError(f"{path} is not valid JSON{where}; {RERUN}") from None
    if not isinstance(manifest, dict):
        raise FormatError(f"{path} holds a {type(manifest).__name__}, not a manifest object")
    require_keys(manifest, MANIFEST_KEYS, path)
    files = manifest["files"]
    if isinstance(files, dict) and files.get("labels") is None and manifest["num_classes"] is None:
        checked = (("count", 0), ("embed_dim", 1))  # a folder without labels has no classes
    else:
        checked = (("count", 0), ("embed_dim", 1), ("num_classes", 1))
    for key, low in checked:
        if not _is_int(manifest[key], low):
            raise FormatError(f"{path}: {key} is {manifest[key]!r}, expected an int >= {low}")
    dims = manifest["dims"]
    if not isinstance(dims, list) or not dims or not all(_is_int(m, 1) for m in dims):
        raise FormatError(f"{path}: dims is {dims!r}, expected a list of positive ints")
    if not isinstance(manifest["files"], dict):
        raise FormatError(f"{path}: files is {manifest['files']!r}, expected an object")
    if not isinstance(manifest["nesting"], dict) or not isinstance(
        manifest["nesting"].get("dims"), list
    ):
        raise FormatError(f"{path}: nesting is {manifest['nesting']!r}, expected {{'dims': ...}}")
    try:
        nesting = Nesting.from_dict(manifest["nesting"])
    except (ValueError, TypeError, KeyError) as e:
        raise FormatError(f"{path}: nesting {manifest['nesting']!r} is not valid ({e})") from None
    if nesting.embed_dim != manifest["embed_dim"]:
        raise FormatError(
            f"{path}: embed_dim is {manifest['embed_dim']} but the nesting "
            f"{list(nesting.dims)} ends at {nesting.embed_dim}"
        )
    if manifest["dtype"] not in DTYPES:
        raise FormatError(f"{path}: dtype is {manifest['dtype']!r}, expected one of {DTYPES}")
    if manifest.get("head") in ("mrl", "mrl-e") and dims != list(nesting.dims):
        raise FormatError(
            f"{path}: dims {dims} differ from the nesting {list(nesting.dims)} of an "
            f"{manifest['head']} head (one head per nested size)"
        )
    if max(dims) > manifest["embed_dim"]:
        raise FormatError(f"{path}: dims {dims} go beyond embed_dim {manifest['embed_dim']}")
    return manifest


def _is_int(value: object, low: int) -> bool:
    """A JSON integer (not a bool, not a float) >= low."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_manifest_against_files(manifest: dict, headers: dict, path: Path) -> None:
    """Refuse the first manifest field that disagrees with the .npy (shape, dtype) `headers`."""
    n, d, g, c = (manifest[k] for k in ("count", "embed_dim", "dims", "num_classes"))
    expected = {
        EMBEDDINGS: ((("count", n), ("embed_dim", d)), ("dtype", manifest["dtype"])),
        LABELS: ((("count", n),), None),
        LOGITS: ((("len(dims)", len(g)), ("count", n), ("num_classes", c)), None),
    }
    if "logits" in headers and str(headers["logits"][1]) != "float32":
        raise FormatError(f"{path.parent / LOGITS} holds {headers['logits'][1]}, not float32")
    for key, (shape, dtype) in headers.items():
        name = FILES[key]
        fields, dtype_field = expected[name]
        if len(shape) != len(fields):
            raise FormatError(
                f"{path.parent / name} has shape {shape}, expected "
                f"[{', '.join(f for f, _ in fields)}] = {tuple(v for _, v in fields)}"
            )
        for (field, said), actual in zip(fields, shape, strict=True):
            if said != actual:
                raise FormatError(
                    f"{path}: {field} is {said} but {name} has {actual} (shape {shape}); the "
                    f"folder was edited or mixed from two runs ({RERUN})"
                )
        if dtype_field and dtype_field[1] != str(dtype):
            raise FormatError(
                f"{path}: {dtype_field[0]} is {dtype_field[1]!r} but {name} holds {dtype}; "
                f"the folder was edited or mixed from two runs ({RERUN})"
            )
