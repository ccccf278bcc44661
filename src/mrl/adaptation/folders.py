"""Reading an adaptor's inputs and writing the adapted vectors as an `mrl embed`-style folder.

Inputs are an `mrl embed` folder (its manifest checked by `load_embeddings`) or a plain
[N, d] .npy (e.g. vectors from an embedding API). The output folder has the layout of
`mrl.evaluation.embed` with the ADAPTED width and nesting in its manifest:

    <out>/embeddings.npy  [N, D] float32 (or float16) adapted vectors
    <out>/labels.npy      [N] int64, copied from the input folder (or given) when it has them
    <out>/manifest.json   count, dtype, embed_dim = D, nesting (the adaptor's), dims (= the
                          nesting: there are no heads), num_classes, files, plus "adaptor"
                          and "source" (the paths) and the input's model/dataset/split

so `mrl eval`, `mrl index build` and `load_embeddings` read it like any `mrl embed` output.
Head logits are not carried over: they belong to the original model's heads, not to the
adapted vectors. The manifest is removed first and written last, so a folder with a
manifest is always whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mrl.adaptation.adaptor import MatryoshkaAdaptor
from mrl.checks import check_finite_rows, check_labels
from mrl.data.npy import load_npy
from mrl.errors import ConfigError, InputError
from mrl.evaluation.embed import (
    DTYPES,
    EMBEDDINGS,
    LABELS,
    MANIFEST,
    embeddings_manifest,
    load_embeddings,
)
from mrl.io import atomic_npy, atomic_write_json, make_dirs

_CHUNK = 65536  # rows adapted and written at once
_CARRIED = ("model", "dataset", "split")  # manifest fields of the input kept in the output


def load_vectors(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, dict | None]:
    """(embeddings [N, d] memmap, labels [N] or None, manifest or None) of an input path.

    Args:
        path: an `mrl embed` folder or an [N, d] .npy file.

    Raises:
        MissingPathError, PathError, FormatError: see `load_embeddings` and `load_npy`.
        InputError: a .npy that is not a non-empty 2-D floating-point array (shape named).
    """
    p = Path(path)
    if p.is_dir():
        data = load_embeddings(p)
        return data.embeddings, data.labels, data.manifest
    x = load_npy(p, mmap=True)
    if x.ndim != 2 or x.size == 0:
        raise InputError(f"{p}: embeddings must be a non-empty 2-D array [N, d], got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{p}: embeddings must be floating point (float32), got {x.dtype}")
    return x, None, None


def adapt_folder(
    adaptor: MatryoshkaAdaptor,
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    labels: np.ndarray | None = None,
    dtype: str = "float32",
    info: dict | None = None,
    progress: bool = True,
) -> Path:
    """Write `adaptor`'s transform of the vectors at `source` to the folder `out_dir`.

    Args:
        adaptor: a fitted (or loaded) `MatryoshkaAdaptor`.
        source: an `mrl embed` folder or an [N, d] .npy.
        out_dir: the folder to create or overwrite (layout in the module docstring).
        labels: [N] class ids for a .npy source (a folder's own labels are used otherwise).
        dtype: "float32" or "float16" for embeddings.npy.
        info: extra manifest fields (e.g. {"adaptor": adaptor_dir}).
        progress: show a tqdm bar.

    Returns:
        `out_dir` as a Path.

    Raises:
        ConfigError: an unknown dtype, or labels given for a folder that has its own.
        InputError: embeddings of another width than the adaptor's, NaN rows, labels of
            another length than the embeddings.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    x, own_labels, manifest = load_vectors(source)
    adaptor._check_fitted()
    adaptor._check_input(x, f"embeddings of {source}")
    check_finite_rows(x, f"embeddings of {source}")  # before any file is written
    if labels is not None and own_labels is not None:
        raise ConfigError(f"{source} has its own labels.npy; give labels only with a .npy input")
    labels = own_labels if labels is None else check_labels(labels, "labels")
    if labels is not None and len(labels) != len(x):
        raise InputError(f"labels have {len(labels)} entries but {source} has {len(x)} rows")
    out = make_dirs(out_dir, "adapted embeddings folder")
    (out / MANIFEST).unlink(missing_ok=True)  # incomplete until the manifest is rewritten
    n, nesting = len(x), adaptor.nesting_
    with atomic_npy(out / EMBEDDINGS, (n, nesting.embed_dim), dtype) as z:
        for s in tqdm(range(0, n, _CHUNK), desc="adapt", disable=not progress, unit="chunk"):
            z[s : s + _CHUNK] = adaptor.transform(np.asarray(x[s : s + _CHUNK]))
    if labels is not None:
        with atomic_npy(out / LABELS, (n,), "int64") as y:
            y[:] = labels
    else:
        (out / LABELS).unlink(missing_ok=True)  # a stale one would pair with other vectors
    if manifest is not None:
        num_classes = manifest["num_classes"]
    else:
        num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else None
    carried = {k: manifest[k] for k in _CARRIED if manifest and k in manifest}
    out_manifest = embeddings_manifest(
        n,
        dtype,
        nesting,
        nesting.dims,
        num_classes,
        None,
        labels is not None,
        False,
        {**carried, "source": str(source), **(info or {})},
    )
    atomic_write_json(out / MANIFEST, out_manifest)
    return out
