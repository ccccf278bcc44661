"""Export a Matryoshka text encoder as a sentence-transformers folder.

The folder is what `sentence_transformers.SentenceTransformer(path, truncate_dim=m)` loads:
the Hugging Face model and tokenizer, mean pooling, the encoder's learned rotation as a
`Dense` module without bias or activation (when it has one), `Normalize` when the encoder
normalises, cosine similarity. The nesting is recorded under the key "mrl" of
`config_sentence_transformers.json` (`exported_nesting` reads it back), and README.md is a
model card with the per-size table when results are given. Vectors equal `TextEncoder.encode`
at every prefix size: sentence-transformers truncates the same mean-pooled vector.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mrl.errors import FormatError, MissingPathError, PathError
from mrl.io import fsync_dir, make_dirs
from mrl.models.text import TextEncoder
from mrl.nesting import Nesting, check_nesting

ST_CONFIG = "config_sentence_transformers.json"
MRL_KEY = "mrl"
FORMAT_VERSION = 1


def export_sentence_transformers(
    encoder: TextEncoder,
    nesting: Nesting,
    out: str | os.PathLike,
    results: Mapping[int, Mapping[str, float]] | None = None,
    title: str | None = None,
) -> Path:
    """Write `encoder` as a sentence-transformers folder at `out`, atomically.

    Args:
        encoder: the text encoder (fine-tuned with a Matryoshka loss, or any).
        nesting: its nested sizes; the last must be the encoder's width.
        out: a new (or empty) folder; it appears whole or not at all.
        results: optional per-size metrics {dim: {"mrr_at_10": 0.71, ...}} (fractions) for
            the model card's table, e.g. what `mrl eval --out` wrote under "sizes".
        title: the model card's heading (default: the folder name).

    Returns:
        The folder.

    Raises:
        ConfigError: `nesting` is not a Nesting or does not end at the encoder's width.
        PathError: `out` is a file, a non-empty folder, or cannot be created.

    Example:
        >>> enc = TextEncoder(default_text_model_path())
        >>> export_sentence_transformers(enc, Nesting.halving(384), "exported/minilm")
        >>> SentenceTransformer("exported/minilm", truncate_dim=48).encode(["a text"]).shape
        (1, 48)
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )
    from torch.nn import Identity

    nesting = check_nesting(nesting)
    nesting.check_embed_dim(encoder.embed_dim)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PathError(f"{out} exists and is not an empty folder; export to a new folder")
    make_dirs(out.parent, "folder of the exported model")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        hf = staging / "hf"
        encoder.model.save_pretrained(str(hf))
        encoder.tokenizer.save_pretrained(str(hf))
        transformer = Transformer(str(hf), max_seq_length=encoder.max_seq_length)
        modules = [transformer, Pooling(encoder.embed_dim, "mean")]
        rotation = encoder.rotation_matrix()
        if rotation is not None:  # Dense computes x @ W.T, as nn.Linear: W is the rotation
            d = encoder.embed_dim
            modules.append(
                Dense(d, d, bias=False, activation_function=Identity(), init_weight=rotation)
            )
        if encoder.normalize:
            modules.append(Normalize())
        folder = staging / "model"
        SentenceTransformer(modules=modules, device="cpu").save(str(folder))
        config_path = folder / ST_CONFIG
        config = json.loads(config_path.read_text())
        config[MRL_KEY] = {"format_version": FORMAT_VERSION, "nesting": nesting.to_dict()}
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        (folder / "README.md").write_text(model_card(title or out.name, nesting, results))
        for path in folder.rglob("*"):
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(folder, out)
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def exported_nesting(path: str | os.PathLike) -> Nesting:
    """The nesting recorded in a folder written by `export_sentence_transformers`.

    Raises:
        MissingPathError: no such folder or no sentence-transformers config in it.
        FormatError: the folder was not exported by mrl (no "mrl" entry) or the entry is damaged.
    """
    config_path = Path(path) / ST_CONFIG
    if not config_path.is_file():
        raise MissingPathError(f"{path} has no {ST_CONFIG}; is it a sentence-transformers folder?")
    try:
        entry = json.loads(config_path.read_text())[MRL_KEY]
        return Nesting.from_dict(entry["nesting"])
    except (KeyError, TypeError, json.JSONDecodeError, ValueError) as e:
        raise FormatError(
            f"{config_path} holds no mrl nesting ({type(e).__name__}: {e}); export the model "
            "with `mrl export` to record it"
        ) from None


def model_card(
    title: str, nesting: Nesting, results: Mapping[int, Mapping[str, float]] | None
) -> str:
    """README.md for an exported model: what it is, how to load it at a size, the table."""
    dims = ", ".join(map(str, nesting.dims))
    lines = [
        f"# {title}",
        "",
        "A Matryoshka text embedding model (Kusupati et al., *Matryoshka Representation",
        "Learning*, NeurIPS 2022, arXiv 2205.13147), exported by "
        "mrl as a sentence-transformers folder. The first m dimensions "
        f"of each embedding are themselves an embedding, for m in {{{dims}}}.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        f'model = SentenceTransformer("path/to/this/folder", truncate_dim={nesting.dims[0]})',
        'embeddings = model.encode(["a text editor", "a strategy game"])',
        "```",
        "",
    ]
    if results:
        metrics = list(next(iter(results.values())))
        lines += [
            "## Results per size",
            "",
            "| dims | " + " | ".join(metrics) + " |",
            "|---" * (len(metrics) + 1) + "|",
        ]
        for dim in sorted(results, key=int):
            row = results[dim]
            lines.append(f"| {dim} | " + " | ".join(f"{100 * row[m]:.2f}" for m in metrics) + " |")
        lines += ["", "(percentages)", ""]
    return "\n".join(lines)
