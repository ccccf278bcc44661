"""What `text_gpu.sh` moves across the device tool's limits, both ways.

    python transfer.py unpack-model SRC DST        (there) float16 weights -> float32 folder
                                                   (`pack.py` made them float16 here)
    python transfer.py split-embeddings EMB OUT    (there) an `mrl embed` folder -> float16
                                                   parts of at most 15 MiB each, + manifest
    python transfer.py join-embeddings PARTS DST   (here) the parts -> an `mrl embed` folder

The tool returns at most 8 files of 16 MiB each; 63,664 x 384 float32 embeddings are 98 MB,
so they come back as float16 in parts (about 2e-4 relative rounding of each value; the ANN
benchmark's ground truth is then computed on the rounded vectors, consistently).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

PART_BYTES = 15 << 20


def convert_model(src: Path, dst: Path, dtype: str) -> None:
    """Copy the model folder `src` to `dst` with its floating safetensors cast to `dtype`."""
    import torch
    from safetensors.torch import load_file, save_file

    to = getattr(torch, dtype)
    ignore = shutil.ignore_patterns("*.safetensors", ".git*")
    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)
    for weights in src.rglob("*.safetensors"):
        tensors = load_file(weights)
        tensors = {k: v.to(to) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, dst / weights.relative_to(src), metadata={"format": "pt"})


def split_embeddings(emb: Path, out: Path) -> None:
    x = np.load(emb / "embeddings.npy").astype(np.float16)
    rows = max(1, PART_BYTES // (x.shape[1] * 2))
    for i, start in enumerate(range(0, len(x), rows)):
        np.save(out / f"emb-part{i}.npy", x[start : start + rows])
    shutil.copy(emb / "manifest.json", out / "emb-manifest.json")


def join_embeddings(parts: Path, dst: Path) -> None:
    files = sorted(parts.glob("emb-part*.npy"), key=lambda f: int(f.stem.removeprefix("emb-part")))
    x = np.concatenate([np.load(f) for f in files]).astype(np.float32)
    manifest = json.loads((parts / "emb-manifest.json").read_text())
    if len(x) != manifest["count"]:
        raise SystemExit(f"{len(files)} parts hold {len(x)} rows, the manifest {manifest['count']}")
    from mrl.io import atomic_open, atomic_write_json  # here: the repository's src/ is importable

    dst.mkdir(parents=True, exist_ok=True)
    with atomic_open(dst / "embeddings.npy") as f:  # the manifest last: it marks a whole folder
        np.save(f, x)
    manifest["note"] = "returned from the GPU run as float16 parts (benchmarks/device/transfer.py)"
    atomic_write_json(dst / "manifest.json", manifest)


if __name__ == "__main__":
    verb, a, b = sys.argv[1:4]
    if verb == "unpack-model":
        convert_model(Path(a), Path(b), "float32")
    else:
        {"split-embeddings": split_embeddings, "join-embeddings": join_embeddings}[verb](
            Path(a), Path(b)
        )
