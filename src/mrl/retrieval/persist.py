"""Saving and loading a `MatryoshkaIndex`: one versioned folder, a manifest checked as data.

A save writes vectors.npy, ids.npy, live.npy, ann.faiss, norms.npy (the stored prefix norms,
so a memory-mapped load never reads the vectors to recompute them) and manifest.json into a
new version
folder and then switches `CURRENT` to it (`mrl.io.atomic_dir_commit`, which also serialises
writers). A load resolves `CURRENT` once and reads every file under `mrl.io.read_version`, so
a concurrent save never deletes the version being read.

The manifest is data, not trusted: every field is cross-checked against the file it
describes (`count` against live.npy, `rows`/`dim`/`dtype` against the arrays, `shortlist_dim`
and the ANN parameters against the faiss index read back), and a mismatch is refused by name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from mrl.checks import check_tag, require_keys
from mrl.errors import ConfigError, FormatError, PathError
from mrl.io import atomic_dir_commit, read_version, sha256_file
from mrl.retrieval.storage import VectorStore, resident_copy

if TYPE_CHECKING:
    from mrl.retrieval.index import MatryoshkaIndex

FORMAT = "mrl-matryoshka-index"
FORMAT_VERSION = 2
METRIC = "cosine (inner product of per-prefix unit vectors)"
FILES = ("vectors.npy", "ids.npy", "live.npy", "ann.faiss", "norms.npy")
# Version 1 (before stored norms) is still read: its norms are computed on first use.
FILES_OF_VERSION = {1: FILES[:4], 2: FILES}
V1_KEYS = (
    "format",
    "format_version",
    "dim",
    "shortlist_dim",
    "dtype",
    "count",
    "rows",
    "metric",
    "index_params",
    "files",
)
KEYS_OF_VERSION = {1: V1_KEYS, 2: (*V1_KEYS, "norm_dims")}
PARAM_KEYS = (
    "ann",
    "hnsw_m",
    "ef_construction",
    "ef_search",
    "ivf_lists",
    "ivf_probe",
    "compact_at",
)
# Saved only when set (an index without them reads as before, in older versions too).
OPTIONAL_PARAM_KEYS = ("graph_dim",)
# The faiss class each `ann` kind is saved as.
ANN_CLASSES = {
    "hnsw": "IndexHNSWFlat",
    "hnsw_sq8": "IndexHNSWSQ",
    "flat": "IndexFlatIP",
    "ivf": "IndexIVFFlat",
    "ivf_sq8": "IndexIVFScalarQuantizer",
}


def manifest_of(index: MatryoshkaIndex, norm_dims: list[int]) -> dict:
    """The manifest fields of `index` (without the per-file checksums)."""
    return {
        "norm_dims": norm_dims,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dim": index.dim,
        "shortlist_dim": index.shortlist_dim,
        "dtype": index.dtype,
        "count": index.count,
        "rows": index.store_.n_rows,
        "metric": METRIC,
        "index_params": {key: getattr(index, key) for key in PARAM_KEYS}
        | {key: getattr(index, key) for key in OPTIONAL_PARAM_KEYS if getattr(index, key)},
    }


def _as_path(path) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise PathError(f"an index path must be a str or os.PathLike, got {path!r}")
    return Path(path)


def save(index: MatryoshkaIndex, path: str | Path) -> None:
    """Save `index` atomically to folder `path`: a crash mid-save leaves the previous save.

    Writes vectors.npy, ids.npy, live.npy, ann.faiss, norms.npy ([rows, len(norm_dims)]
    float32 prefix norms) and manifest.json (format version, D, D_s, dtype, count, rows,
    metric, index parameters, norm dims, sha256 and size of every file) into a new version
    folder, then switches `path/CURRENT` to it.
    """
    store = index.store_
    norms = store.cached_norms
    dims = sorted(norms)
    table = np.stack([norms[d] for d in dims], axis=1) if dims else np.zeros((store.n_rows, 0))
    with atomic_dir_commit(_as_path(path)) as tmp:
        np.save(tmp / "vectors.npy", store.vectors)
        np.save(tmp / "ids.npy", store.ids)
        np.save(tmp / "live.npy", store.live)
        np.save(tmp / "norms.npy", table.astype(np.float32, copy=False))
        faiss.write_index(index.ann_, str(tmp / "ann.faiss"))
        manifest = manifest_of(index, dims)
        manifest["files"] = {
            name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in FILES
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _lie(source: Path, field: str, says, actual, where: str) -> FormatError:
    return FormatError(
        f"{source}: manifest field {field!r} says {says!r} but {where} has {actual!r}; the "
        "index was edited or damaged (save it again from the source vectors)"
    )


def _read_manifest(version: Path) -> dict:
    path = version / "manifest.json"
    if not path.is_file():
        raise FormatError(f"truncated index at {version.parent}: manifest.json is missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"corrupted index: {path} is not JSON ({e})") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    readable = version if version in FILES_OF_VERSION and type(version) is int else FORMAT_VERSION
    check_tag(manifest, FORMAT, readable, path, "index", version_key="format_version")
    keys = KEYS_OF_VERSION[readable]
    require_keys(manifest, keys, path)
    unknown = sorted(set(manifest) - set(keys))
    if unknown:
        raise FormatError(f"{path} has unknown key(s) {unknown}; it was edited (save it again)")
    for key in ("index_params", "files"):
        if not isinstance(manifest[key], dict):
            raise FormatError(f"{path}: {key!r} must be a mapping, got {manifest[key]!r}")
    require_keys(manifest["index_params"], PARAM_KEYS, f"{path} (index_params)")
    unknown = sorted(set(manifest["index_params"]) - set(PARAM_KEYS) - set(OPTIONAL_PARAM_KEYS))
    if unknown:
        raise FormatError(f"{path}: unknown index_params key(s) {unknown}; it was edited")
    require_keys(manifest["files"], FILES_OF_VERSION[readable], f"{path} (files)")
    for key in ("dim", "shortlist_dim", "count", "rows"):
        if type(manifest[key]) is not int:
            raise FormatError(
                f"{path}: {key!r} must be an int, got {manifest[key]!r}; it was edited"
            )
    if manifest["metric"] != METRIC:
        raise FormatError(f"{path}: metric {manifest['metric']!r} is not {METRIC!r}")
    return manifest


def _check_files(version: Path, manifest: dict, verify: bool) -> None:
    """Every file is present with the manifest's size (and sha256 when `verify`)."""
    root = version.parent
    for name in FILES_OF_VERSION[manifest["format_version"]]:
        meta, f = manifest["files"][name], version / name
        if not isinstance(meta, dict) or {"sha256", "bytes"} - set(meta):
            raise FormatError(f"{version / 'manifest.json'}: files[{name!r}] lacks sha256/bytes")
        if not f.is_file():
            raise FormatError(f"truncated index at {root}: {name} is missing")
        if f.stat().st_size != meta["bytes"]:
            raise FormatError(
                f"truncated index at {root}: {name} has {f.stat().st_size} bytes, "
                f"the manifest says {meta['bytes']}"
            )
        if verify and sha256_file(f) != meta["sha256"]:
            raise FormatError(f"checksum mismatch for {name} at {root}: the index is corrupted")


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:
        raise FormatError(f"{path} is not a readable .npy array ({e})") from None


def _check_arrays(src: Path, m: dict, vectors, ids, live) -> None:
    """The arrays agree with the manifest's rows, dim, dtype and count."""
    if vectors.ndim != 2:
        raise _lie(src, "dim", m["dim"], f"shape {vectors.shape}", "vectors.npy")
    if vectors.shape[1] != m["dim"]:
        raise _lie(src, "dim", m["dim"], vectors.shape[1], "vectors.npy (columns)")
    if vectors.shape[0] != m["rows"]:
        raise _lie(src, "rows", m["rows"], vectors.shape[0], "vectors.npy (rows)")
    if str(vectors.dtype) != m["dtype"]:
        raise _lie(src, "dtype", m["dtype"], str(vectors.dtype), "vectors.npy")
    for name, arr, dtype in (("ids.npy", ids, np.int64), ("live.npy", live, np.bool_)):
        if arr.dtype != dtype or arr.shape != (m["rows"],):
            raise FormatError(
                f"{src}: {name} holds {arr.dtype} of shape {arr.shape}, expected "
                f"{np.dtype(dtype)} of shape ({m['rows']},) (manifest 'rows'); it was edited"
            )
    if len(ids) and ids.min() < 0:
        raise FormatError(f"{src}: ids.npy holds the negative id {int(ids.min())}; ids are >= 0")
    if int(live.sum()) != m["count"]:
        raise _lie(src, "count", m["count"], int(live.sum()), "live.npy (live rows)")


def _read_norms(version: Path, m: dict) -> dict[int, np.ndarray]:
    """{dim: [rows] float32} from norms.npy, checked against the manifest's `norm_dims`."""
    src = version / "manifest.json"
    if m["format_version"] == 1:
        return {}
    dims = m["norm_dims"]
    ok = isinstance(dims, list) and all(type(d) is int and 1 <= d <= m["dim"] for d in dims)
    if not ok or dims != sorted(set(dims)):
        raise FormatError(
            f"{src}: 'norm_dims' must be increasing ints in 1..{m['dim']}, got {dims!r}; it was "
            "edited (save it again)"
        )
    table = _load_array(version / "norms.npy", mmap=False)
    if table.dtype != np.float32 or table.shape != (m["rows"], len(dims)):
        raise FormatError(
            f"{src}: norms.npy holds {table.dtype} of shape {table.shape}, expected float32 of "
            f"shape ({m['rows']}, {len(dims)}) (manifest 'rows' and 'norm_dims'); it was edited"
        )
    return {d: np.ascontiguousarray(table[:, j]) for j, d in enumerate(dims)}


def _check_ann(src: Path, m: dict, ann: faiss.Index) -> None:
    """The faiss index read back agrees with `shortlist_dim`, `rows` and the ANN parameters."""
    params = m["index_params"]
    kind = params["ann"]
    got = type(ann).__name__
    if got != ANN_CLASSES.get(kind) or ann.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise _lie(src, "index_params.ann", kind, got, "ann.faiss")
    if ann.d != m["shortlist_dim"]:
        raise _lie(src, "shortlist_dim", m["shortlist_dim"], ann.d, "ann.faiss (d)")
    if ann.ntotal != m["rows"]:
        raise _lie(src, "rows", m["rows"], ann.ntotal, "ann.faiss (ntotal)")
    if kind in ("hnsw", "hnsw_sq8"):
        if ann.hnsw.nb_neighbors(1) != params["hnsw_m"]:
            got_m = ann.hnsw.nb_neighbors(1)
            raise _lie(src, "index_params.hnsw_m", params["hnsw_m"], got_m, "ann.faiss (M)")
        if ann.hnsw.efConstruction != params["ef_construction"]:
            got_ef = ann.hnsw.efConstruction
            raise _lie(
                src, "index_params.ef_construction", params["ef_construction"], got_ef, "ann.faiss"
            )
    if kind in ("ivf", "ivf_sq8") and ann.nlist != params["ivf_lists"]:
        raise _lie(src, "index_params.ivf_lists", params["ivf_lists"], ann.nlist, "ann.faiss")


def load(
    cls: type[MatryoshkaIndex], path: str | Path, mmap: bool = False, verify: bool = True
) -> MatryoshkaIndex:
    """Load the index saved in folder `path`, refusing any file that disagrees with the manifest.

    Args:
        cls: the index class to construct.
        path: folder written by `save`.
        mmap: memory-map the full vectors read-only instead of reading them into RAM (the
            mapping stays valid even after a later save prunes this version).
        verify: check every file's sha256 (reads all bytes once).

    Raises:
        MissingPathError: no such folder.
        PathError: `path` is a file, not an index folder.
        FormatError: not an index folder, foreign or unknown format version, a missing key, a
            missing or truncated file, a checksum mismatch, or a manifest field that
            disagrees with its file (the message names the field and both values).
    """
    path = _as_path(path)
    if path.is_file():
        raise PathError(
            f"{path} is a file, not an index folder; give the folder that `mrl index build` "
            "or `MatryoshkaIndex.save` wrote"
        )
    with read_version(path) as version:
        manifest = _read_manifest(version)
        src = version / "manifest.json"
        _check_files(version, manifest, verify)
        vectors = _load_array(version / "vectors.npy", mmap=True)
        ids = _load_array(version / "ids.npy", mmap=False)
        live = _load_array(version / "live.npy", mmap=False)
        _check_arrays(src, manifest, vectors, ids, live)
        index = cls(
            shortlist_dim=manifest["shortlist_dim"],
            dtype=manifest["dtype"],
            **manifest["index_params"],
        )
        try:
            index.check_params(manifest["dim"])
        except ConfigError as e:
            raise FormatError(f"{src}: {e}; the manifest was edited (save it again)") from None
        try:
            ann = faiss.read_index(str(version / "ann.faiss"))
        except RuntimeError as e:
            raise FormatError(f"{version / 'ann.faiss'} is not a readable faiss index") from e
        _check_ann(src, manifest, ann)
        norms = _read_norms(version, manifest)
        if not mmap:
            vectors = resident_copy(vectors)
    index.store_ = VectorStore(vectors, ids, live, norms)
    index.ann_ = ann
    repeated = index.store_.repeated_live_id()
    if repeated is not None:
        raise FormatError(f"{src}: ids.npy holds the live id {repeated} twice; it was edited")
    return index
