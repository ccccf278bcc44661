"""A tiny randomly initialised BERT with MiniLM's tokenizer: real text code paths in seconds;
and a small Debian-like corpus with a text run config over it."""

import gzip
import json
import random
import shutil
from pathlib import Path

from mrl.models.text import default_text_model_path
from mrl.training import TrainConfig

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def tiny_bert(folder: Path, vocab_size: int, dropout: float = 0.1) -> Path:
    """Save a 2-layer, 32-wide random BERT with MiniLM's tokenizer files into `folder`.

    `dropout` 0 makes training deterministic across batch shardings (DDP tests)."""
    import transformers

    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=vocab_size,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    transformers.BertModel(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(default_text_model_path()) / name, folder / name)
    return folder


SECTIONS = {
    "games": "game play level puzzle arcade board",
    "libs": "library shared runtime linking symbols",
    "python": "python module package import script",
    "sound": "audio sound mixer music player",
}


def write_debian(path, n=96, seed=0):
    """A small debian-packages.jsonl.gz: summaries and descriptions that name their section."""
    rng = random.Random(seed)
    with gzip.open(path, "wt") as f:
        for i in range(n):
            section = list(SECTIONS)[i % len(SECTIONS)]
            words = SECTIONS[section].split()
            summary = " ".join(rng.choice(words) for _ in range(3)) + f" tool {i}"
            extra = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
            row = {
                "package": f"pkg{i}",
                "source": f"src{i}",
                "section": section,
                "summary": summary,
                "description": f"{summary}. {extra}",
                "tags": [],
            }
            f.write(json.dumps(row) + "\n")
    return path


def text_config(tmp_path, model, data, name="run", **kw):
    values = dict(
        dataset="debian",
        data_root=str(data),
        backbone="text",
        text_model=str(model),
        embed_dim=32,
        nesting=[8, 16, 32],
        epochs=2,
        batch_size=16,
        lr=1e-3,
        max_seq_length=32,
        progress=False,
        out_dir=str(tmp_path / name),
    )
    return TrainConfig(**{**values, **kw})
