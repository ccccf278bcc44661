"""Request limits and the error that names the one a request passed.

A refused request answers 413 when it is too large (body bytes, items, queries, texts) and 422
when a value is out of range (k); the message names the limit, its value, and the `mrl serve`
flag that raises it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mrl.checks import check_int
from mrl.errors import InputError


class LimitError(InputError):
    """A request beyond one of the server's limits (HTTP 413, or 422 for k)."""

    def __init__(self, message: str, status: int = 413):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Request limits; each refusal (413 for size, 422 for k) names the limit and its flag.

    Attributes:
        max_body_bytes: bytes of one request body (a 1,000 x 1,024 float batch is ~20 MB).
        max_vectors: vectors or texts added by one request.
        max_queries: queries in one search batch.
        max_k: results per query.
        max_inputs: texts embedded by one /v1/embeddings request (OpenAI allows 2,048).
    """

    max_body_bytes: int = 32 << 20
    max_vectors: int = 10_000
    max_queries: int = 1_000
    max_k: int = 1_000
    max_inputs: int = 2_048

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_vectors", "max_queries", "max_k", "max_inputs"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))

    def check(self, name: str, value: int, what: str) -> None:
        """Raise `LimitError` if `value` (a count of `what`) is above limit `name`."""
        limit = getattr(self, name)
        if value > limit:
            flag = "--" + name.replace("_", "-")
            raise LimitError(
                f"{what} is {value}, above this server's limit {name}={limit}; send less per "
                f"request (or start the server with {flag})",
                status=422 if name == "max_k" else 413,
            )
