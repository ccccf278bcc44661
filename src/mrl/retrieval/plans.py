"""Search plans as data: single-shot, shortlist + rerank, and funnel (adaptive retrieval).

A plan says which prefix finds the shortlist (D_s, the shortlist dim) and which prefixes re-score
it (D_r, the rerank dims). Every plan reduces to the same three numbers the index executes:
`shortlist_dim`, the shortlist size, and a tuple of `(dim, candidates)` rerank steps, where
step i re-scores the top `candidates` of the previous ordering with the `dim`-prefix.
D_s is always the shortlist dim and D_r the rerank dim; they are never swapped.

References:
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, arXiv 2205.13147,
    Section 4.3 (adaptive retrieval, funnel retrieval) and Figure 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from mrl.checks import check_int
from mrl.errors import ConfigError

Step = tuple[int, int]  # (dim, candidates): re-score the top `candidates` with the `dim`-prefix


def _set_ints(plan, *names: str) -> None:
    """Check the int fields `names` of a frozen plan (floats refused, not truncated)."""
    for name in names:
        value = check_int(f"{type(plan).__name__}.{name}", getattr(plan, name))
        object.__setattr__(plan, name, value)  # numpy ints become Python ints
    if not isinstance(plan.exact, bool | np.bool_):
        raise ConfigError(f"{type(plan).__name__}.exact must be True or False, got {plan.exact!r}")
    object.__setattr__(plan, "exact", bool(plan.exact))


@dataclass(frozen=True)
class SingleShot:
    """Search once with the `dim`-prefix: exact (brute force) by default, or through the ANN.

    Args:
        dim: prefix size used for the whole search.
        exact: True scans every stored vector (the paper's single-shot baseline); False uses the
            index's ANN structure, which requires `dim == index.shortlist_dim`.

    References:
        arXiv 2205.13147, Figure 8 ("single-shot" curve).

    Example:
        >>> SingleShot(2048).steps
        ()
    """

    dim: int
    exact: bool = True

    def __post_init__(self) -> None:
        _set_ints(self, "dim")

    @property
    def shortlist_dim(self) -> int:
        return self.dim

    @property
    def steps(self) -> tuple[Step, ...]:
        return ()

    def shortlist_size(self, k: int) -> int:
        return k

    def __str__(self) -> str:
        return f"single:{self.dim}" + ("" if self.exact else ":ann")


@dataclass(frozen=True)
class Rerank:
    """Shortlist `shortlist` candidates with the D_s-prefix, then re-score them with the D_r-prefix.

    Args:
        shortlist_dim: D_s, the prefix that finds the shortlist (16 in the paper's headline).
        rerank_dim: D_r >= D_s, the prefix that orders the shortlist (2048 in the paper);
            D_r = D_s re-scores a shortlist found on 8-bit codes with the float vectors.
        shortlist: number of candidates k' re-scored (200 in the paper).
        exact: True finds the shortlist by brute force at D_s (the paper's FLOP accounting,
            D_s * N); False uses the index's ANN structure (HNSW in the paper's wall-clock).

    References:
        arXiv 2205.13147, Section 4.3 and Figure 8.

    Example:
        >>> Rerank(shortlist_dim=16, rerank_dim=2048, shortlist=200).steps
        ((2048, 200),)
    """

    shortlist_dim: int
    rerank_dim: int
    shortlist: int = 200
    exact: bool = False

    def __post_init__(self) -> None:
        _set_ints(self, "shortlist_dim", "rerank_dim", "shortlist")
        _check_dims_increasing(self.shortlist_dim, self.steps)

    @property
    def steps(self) -> tuple[Step, ...]:
        return ((self.rerank_dim, self.shortlist),)

    def shortlist_size(self, k: int) -> int:
        return self.shortlist

    def __str__(self) -> str:
        return f"rerank:{self.shortlist_dim}:{self.rerank_dim}:{self.shortlist}" + (
            ":exact" if self.exact else ""
        )


@dataclass(frozen=True)
class Funnel:
    """Shortlist with the D_s-prefix, then re-score in steps of growing dim and shrinking size.

    Args:
        shortlist_dim: D_s, the prefix that finds the first shortlist.
        steps: `(dim, candidates)` pairs; dims strictly increase (each > D_s, but the first
            may equal D_s: a float re-scoring of a shortlist found on 8-bit codes) and
            candidate counts never increase; the first step's `candidates` is the shortlist
            size.
        exact: True finds the shortlist by brute force at D_s; False uses the ANN structure.

    References:
        arXiv 2205.13147, Section 4.3 ("funnel retrieval": 200 -> 100 -> 50 -> 25 -> 10 while
        the dim goes 32 -> 64 -> 128 -> 256 -> 2048).

    Example:
        >>> Funnel.halving(2048).steps
        ((32, 200), (64, 100), (128, 50), (256, 25), (2048, 10))
    """

    shortlist_dim: int
    steps: tuple[Step, ...]
    exact: bool = False

    def __post_init__(self) -> None:
        _set_ints(self, "shortlist_dim")
        try:
            raw = list(self.steps)
        except TypeError:
            raise ConfigError(
                f"Funnel.steps must be a sequence of (dim, candidates) pairs, got {self.steps!r}"
            ) from None
        if not raw:
            raise ConfigError("a funnel needs at least one (dim, candidates) step")
        steps = []
        for i, step in enumerate(raw):
            try:
                d, c = step
            except (TypeError, ValueError):
                raise ConfigError(
                    f"Funnel step {i} must be a (dim, candidates) pair, got {step!r}"
                ) from None
            steps.append(
                (check_int(f"Funnel step {i} dim", d), check_int(f"Funnel step {i} candidates", c))
            )
        steps = tuple(steps)
        _check_dims_increasing(self.shortlist_dim, steps)
        for (_, a), (_, b) in pairwise(steps):
            if b > a:
                raise ConfigError(
                    f"funnel candidate counts must not increase, got {a} then {b} in {list(steps)}"
                )
        object.__setattr__(self, "steps", steps)

    @classmethod
    def halving(
        cls, embed_dim: int, shortlist_dim: int = 16, shortlist: int = 200, final: int = 10
    ) -> Funnel:
        """The paper's schedule: the size halves and the dim doubles, then `final` at full dim.

        Halving continues while the size stays >= 2 * final and the doubled dim < embed_dim,
        so 2048 with the defaults gives 32x200, 64x100, 128x50, 256x25, then 2048x10.
        """
        steps: list[Step] = []
        dim, size = 2 * shortlist_dim, shortlist
        while size >= 2 * final and dim < embed_dim:
            steps.append((dim, size))
            dim, size = 2 * dim, size // 2
        steps.append((embed_dim, final) if steps else (embed_dim, shortlist))
        return cls(shortlist_dim, tuple(steps))

    def shortlist_size(self, k: int) -> int:
        return self.steps[0][1]

    def __str__(self) -> str:
        body = ",".join(f"{d}x{c}" for d, c in self.steps)
        return f"funnel:{self.shortlist_dim}:{body}" + (":exact" if self.exact else "")


Plan = SingleShot | Rerank | Funnel


def _check_dims_increasing(shortlist_dim: int, steps: tuple[Step, ...]) -> None:
    """Rerank dims strictly increase; the first may equal D_s (a re-scoring step).

    A first step at D_s re-scores, with the stored float vectors, a shortlist that an ANN
    structure over 8-bit codes scored approximately (`hnsw_sq8`, `ivf_sq8`); the tuner offers
    it for those kinds, where it is the "exact rescoring of the final few" of quantised search.
    """
    dims = [shortlist_dim] + [d for d, _ in steps]
    for i, (a, b) in enumerate(pairwise(dims)):
        if b < a or (b == a and i > 0):
            raise ConfigError(
                f"plan dims must strictly increase (D_s first, then each rerank dim; only the "
                f"first rerank dim may equal D_s, to re-score), got {a} then {b} in {dims}"
            )


def check_plan(plan: Plan, embed_dim: int, k: int) -> None:
    """Raise a `ConfigError` unless `plan` can return top-`k` from a `embed_dim`-dim index."""
    if not isinstance(plan, SingleShot | Rerank | Funnel):
        raise ConfigError(
            f"plan must be a SingleShot, Rerank or Funnel, got {type(plan).__name__} "
            "(parse_plan reads the CLI spelling)"
        )
    dims = [plan.shortlist_dim] + [d for d, _ in plan.steps]
    if max(dims) > embed_dim:
        raise ConfigError(f"plan {plan} uses dim {max(dims)} but the index has only {embed_dim}")
    size = plan.shortlist_size(k)
    if size < k:
        raise ConfigError(f"shortlist of {size} is smaller than k={k} in plan {plan}")
    if plan.steps and plan.steps[-1][1] < k:
        raise ConfigError(
            f"the last step of plan {plan} keeps {plan.steps[-1][1]} candidates, fewer than k={k}"
        )


def parse_plan(spec: str, embed_dim: int, shortlist_dim: int = 16) -> Plan:
    """Read a plan from the CLI spelling.

    Spellings: `single:DIM[:ann]`, `rerank:DS:DR:SHORTLIST[:exact]`, `funnel` (the paper's
    halving schedule from `shortlist_dim`), `funnel:DS:DIMxCAND,DIMxCAND,...[:exact]`.

    Example:
        >>> parse_plan("rerank:16:2048:200", 2048)
        Rerank(shortlist_dim=16, rerank_dim=2048, shortlist=200, exact=False)
    """
    if not isinstance(spec, str):
        raise ConfigError(f"a plan spelling must be a str like 'funnel', got {spec!r}")
    parts = spec.strip().split(":")
    flag = parts[-1] if parts[-1] in ("exact", "ann") else None
    if flag:
        parts = parts[:-1]
    kind, args = parts[0], parts[1:]
    try:
        if kind == "single" and len(args) == 1 and flag != "exact":
            return SingleShot(int(args[0]), exact=flag != "ann")
        if kind == "rerank" and len(args) == 3 and flag != "ann":
            return Rerank(int(args[0]), int(args[1]), int(args[2]), exact=flag == "exact")
        if kind == "funnel" and not args and flag is None:
            return Funnel.halving(embed_dim, shortlist_dim=shortlist_dim)
        if kind == "funnel" and len(args) == 2 and flag != "ann":
            steps = tuple(tuple(int(x) for x in s.split("x")) for s in args[1].split(","))
            if any(len(s) != 2 for s in steps):
                raise ConfigError(f"funnel steps must look like 32x200,64x100, got {args[1]!r}")
            return Funnel(int(args[0]), steps, exact=flag == "exact")
    except ValueError as e:
        if "invalid literal" not in str(e):
            raise
    raise ConfigError(
        f"cannot read plan {spec!r}; use single:DIM[:ann], rerank:DS:DR:SHORTLIST[:exact], "
        "funnel, or funnel:DS:32x200,64x100,...[:exact]"
    )
