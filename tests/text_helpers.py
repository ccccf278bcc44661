"""A tiny randomly initialised BERT with MiniLM's tokenizer: real text code paths in seconds."""

import shutil
from pathlib import Path

from mrl.models.text import default_text_model_path

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def tiny_bert(folder: Path, vocab_size: int) -> Path:
    """Save a 2-layer, 32-wide random BERT with MiniLM's tokenizer files into `folder`."""
    import transformers

    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=vocab_size,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(default_text_model_path()) / name, folder / name)
    return folder
