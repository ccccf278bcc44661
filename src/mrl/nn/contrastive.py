"""Matryoshka contrastive loss: symmetric InfoNCE at every nested size from one encoder pass.

`prefix_similarities` gives the cosine similarity of every pair at every prefix size, each
prefix L2-normalised on its own, stacked as [G, Na, Nb]. The fused path splits the d dims into
the nesting's blocks [0, m_1), [m_1, m_2), ..., takes one dot-product matrix per block and
cumulative-sums them: prefix dot products and prefix squared norms are both cumulative sums
over blocks, so all G similarity matrices cost the flops of ONE full [Na, d] @ [d, Nb] matmul
(one matmul per size costs sum_m m / d of that: about 2x for a halving nesting). Measured on
CPU (`benchmarks/contrastive_fused.py`, loss forward + backward, 1 thread) the fused path is
1.5-1.8x faster at batch 64 and 1.05-1.4x at batch 256, where the [G, N, N] softmax terms,
identical in both paths, dominate; it is the default. A hand-written backward of the fused
similarities gained only ~5% more and is not worth its code.

`MatryoshkaContrastiveLoss` applies InfoNCE with in-batch negatives (plus optional hard
negatives) to each size and returns sum_m c_m * loss_m; with `distill_weight` > 0 each
smaller size also learns the full size's ranking of the batch (self-distillation, below).
"""

from __future__ import annotations

import torch
from torch import nn

from mrl.checks import check_int, check_number
from mrl.errors import ConfigError, InputError
from mrl.nesting import Nesting, check_nesting, truncate

_EPS = 1e-12  # the norm floor of `truncate` / F.normalize: an all-zero prefix stays zero


def _check_pair(a: torch.Tensor, b: torch.Tensor, nesting: Nesting, a_name: str, b_name: str):
    for name, t in ((a_name, a), (b_name, b)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch tensor [N, d], got {type(t).__name__}")
        if t.ndim != 2:
            raise InputError(f"{name} must be a 2-D [N, d] tensor, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise InputError(f"{name} must be floating point, got dtype {t.dtype}")
        nesting.check_embed_dim(t.shape[1])
    if a.dtype != b.dtype or a.device != b.device:
        raise InputError(
            f"{a_name} ({a.dtype}, {a.device}) and {b_name} ({b.dtype}, {b.device}) must share "
            "dtype and device; cast one with .to(other)"
        )


def prefix_similarities(
    a: torch.Tensor, b: torch.Tensor, nesting: Nesting, fused: bool = True
) -> torch.Tensor:
    """Cosine similarity of every (a_i, b_j) pair at every nested size.

    Args:
        a: [Na, d] embeddings, d = nesting.embed_dim.
        b: [Nb, d] embeddings.
        nesting: the prefix sizes m_1 < ... < m_G = d.
        fused: one block matmul per nesting block plus cumulative sums (the flops of a single
            full matmul); False computes one matmul of normalised prefixes per size (the plain
            reference, about 2x the flops for a halving nesting).

    Returns:
        [G, Na, Nb] cosine similarities; entry [g] uses each row's first m_g dims, each prefix
        normalised on its own (an all-zero prefix gives similarity 0, as `truncate` does).
        The fused path returns float32 for float16 / bfloat16 input (its sums over blocks are
        kept in float32; the softmax that follows runs in float32 under autocast anyway).

    Example:
        >>> s = prefix_similarities(torch.randn(3, 16), torch.randn(5, 16), Nesting((4, 8, 16)))
        >>> s.shape
        torch.Size([3, 3, 5])
    """
    nesting = check_nesting(nesting)
    _check_pair(a, b, nesting, "a", "b")
    return _scaled_similarities(a, b, nesting, 1.0, fused)


def _scaled_similarities(
    a: torch.Tensor, b: torch.Tensor, nesting: Nesting, scale: float, fused: bool
) -> torch.Tensor:
    """`scale` * prefix cosine similarities [G, Na, Nb]; the scale rides on the small [G, N]
    inverse norms (not on the [G, Na, Nb] result), which saves a full pass and its backward."""
    if not fused:
        return torch.stack([truncate(a, m, True) * scale @ truncate(b, m, True).T for m in nesting])
    low_precision = a.element_size() < 4
    if low_precision:
        # float16 block dot products and squared norms overflow (65504) for rows of norm > 256;
        # rows scaled to unit norm first (prefix cosines do not change) keep them <= 1, and
        # the sums over blocks are kept in float32.
        a, b = (
            t / t.norm(dim=1, keepdim=True, dtype=torch.float32).clamp_min(_EPS).to(t.dtype)
            for t in (a, b)
        )
    widths = [hi - lo for lo, hi in zip((0, *nesting.dims), nesting.dims, strict=False)]
    a_blocks, b_blocks = a.split(widths, dim=1), b.split(widths, dim=1)
    # (G, Na, Nb): block dot products, then prefix dot products.
    dots = torch.stack([ak @ bk.T for ak, bk in zip(a_blocks, b_blocks, strict=True)])
    dots = (dots.float() if low_precision else dots).cumsum(0)
    # Squared norms per block, then per prefix. 1 / max(norm, eps) as rsqrt(max(norm^2, eps^2)):
    # the same floor as `truncate`, with a finite gradient at an all-zero prefix (its 1 / eps
    # scale still overflows a float16 input gradient, as it does through F.normalize).
    a_sq = torch.stack([_sq_norms(ak, dots.dtype) for ak in a_blocks]).cumsum(0)  # (G, Na)
    b_sq = torch.stack([_sq_norms(bk, dots.dtype) for bk in b_blocks]).cumsum(0)  # (G, Nb)
    a_inv = a_sq.clamp_min(_EPS**2).rsqrt() * scale
    b_inv = b_sq.clamp_min(_EPS**2).rsqrt()
    # Two broadcast multiplies: measured faster than dividing by the outer product of norms.
    return dots * a_inv[:, :, None] * b_inv[:, None, :]


def _sq_norms(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[N] squared L2 norms of the rows of `x`, summed in `dtype`."""
    x = x.to(dtype)
    return (x * x).sum(1)


class MatryoshkaContrastiveLoss(nn.Module):
    """sum_m c_m * InfoNCE(prefix_m(queries), prefix_m(positives)), in-batch negatives.

    For each nested size m the prefixes are L2-normalised on their own, logits are the cosine
    similarities divided by `temperature`, and the target of query i is positive i (the
    diagonal). Hard negatives join the candidates of the query -> positive direction only;
    `symmetric=True` averages it with the positive -> query direction over the in-batch
    queries, as sentence-transformers' `MultipleNegativesSymmetricRankingLoss` does.

    Args:
        nesting: sizes and their weights c_m.
        temperature: logit scale 1 / temperature; 0.05 is sentence-transformers' scale 20.
        symmetric: average the query -> positive and positive -> query losses.
        n_dims_per_step: if set, each forward uses a uniform random subset of this many sizes
            (1..G), drawn from the loss's own generator seeded with `seed`, so runs repeat.
            As in sentence-transformers' `MatryoshkaLoss`, the full size is not forced into the
            subset and the weights are not renormalised: the step's loss is the sum of c_m *
            loss_m over the drawn sizes (in expectation k / G of the full loss).
        seed: seed of that generator; its state is part of `state_dict()`, so a resumed run
            draws the same sizes as an uninterrupted one.
        fused: how `prefix_similarities` computes the similarities; the default is the faster
            on CPU in `benchmarks/contrastive_fused.py`.
        distill_weight: lambda of the self-distillation term: loss_m becomes InfoNCE_m +
            lambda * KL(p_full || p_m), where p is the softmax over a query's candidates of
            the similarities / `distill_temperature` (and, when symmetric, the same over a
            positive's in-batch queries, averaged) and p_full, from the full size, is detached:
            the full size teaches its prefixes how it ranks the whole batch, not only which
            candidate is the positive (the same KL, between layers, is sentence-transformers'
            `AdaptiveLayerLoss` kl_div_weight). KL_full is 0, so the full size's objective is
            unchanged. When `n_dims_per_step` leaves the full size out, its similarities are
            still computed (without gradients) as the teacher. 0 (the default) is plain MRL.
        distill_temperature: the temperature of both distributions of that KL; None: the
            InfoNCE `temperature`. A higher one spreads the teacher's mass over the negatives.

    References:
        Kusupati et al., NeurIPS 2022, arXiv 2205.13147 (MRL; ALIGN with per-prefix norms);
        van den Oord et al., arXiv 1807.03748 (InfoNCE); Henderson et al., arXiv 1705.00652
        (in-batch negatives, MultipleNegativesRankingLoss); Hinton et al., arXiv 1503.02531
        (distillation at a temperature); Li et al., arXiv 2402.14776 (2D Matryoshka sentence
        embeddings: KL alignment of smaller embeddings to the full one).

    Example:
        >>> loss_fn = MatryoshkaContrastiveLoss(Nesting((8, 16)), temperature=0.05)
        >>> q, p = torch.randn(4, 16), torch.randn(4, 16)
        >>> loss_fn(q, p).shape, loss_fn.per_size(q, p).shape
        (torch.Size([]), torch.Size([2]))
    """

    def __init__(
        self,
        nesting: Nesting,
        temperature: float = 0.05,
        symmetric: bool = True,
        n_dims_per_step: int | None = None,
        seed: int = 0,
        fused: bool = True,
        distill_weight: float = 0.0,
        distill_temperature: float | None = None,
    ) -> None:
        super().__init__()
        self.nesting = check_nesting(nesting)
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)
        self.distill_weight = check_number("distill_weight", distill_weight, low=0)
        self.distill_temperature = (
            self.temperature
            if distill_temperature is None
            else check_number("distill_temperature", distill_temperature, low=0, low_open=True)
        )
        if not isinstance(symmetric, bool) or not isinstance(fused, bool):
            raise ConfigError(
                f"symmetric and fused must be True or False, got {symmetric!r} and {fused!r}"
            )
        self.symmetric = symmetric
        self.fused = fused
        g = len(self.nesting)
        self.n_dims_per_step = (
            None
            if n_dims_per_step is None
            else check_int(
                f"n_dims_per_step (sizes per step, nesting has {g})", n_dims_per_step, 1, g
            )
        )
        self.seed = check_int("seed", seed, low=0)
        self.generator = torch.Generator().manual_seed(self.seed)

    def get_extra_state(self) -> dict:
        """The generator's state, so `state_dict()` / `load_state_dict()` resume the draws."""
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def draw_sizes(self) -> torch.Tensor:
        """Indices (ascending, into the nesting) of the sizes used by the next forward."""
        g = len(self.nesting)
        if self.n_dims_per_step is None or self.n_dims_per_step == g:
            return torch.arange(g)
        return torch.randperm(g, generator=self.generator)[: self.n_dims_per_step].sort().values

    def per_size(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unweighted loss of every size, shape [G] (all sizes, whatever n_dims_per_step):
        InfoNCE, plus distill_weight * KL to the full size when distilling.

        Args:
            queries: [N, d] query embeddings.
            positives: [N, d], positives[i] matches queries[i].
            negatives: optional hard negatives, [N, d] (one per query) or [N, H, d]; every
                query sees all N * H of them as extra candidates.
        """
        return self._losses(queries, positives, negatives, self.nesting)

    def forward(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sum_m c_m * loss_m over all sizes (or over the drawn subset), a scalar."""
        nesting = self.nesting
        if self.n_dims_per_step is not None:
            nesting = nesting.subset([nesting.dims[i] for i in self.draw_sizes().tolist()])
        losses = self._losses(queries, positives, negatives, nesting)
        return nesting.weight_tensor(losses) @ losses

    def _losses(self, queries, positives, negatives, nesting: Nesting) -> torch.Tensor:
        candidates = self._candidates(queries, positives, negatives)
        # Only the prefixes of the sizes in `nesting` are needed: its last size bounds the dims.
        d = nesting.embed_dim
        logits = _scaled_similarities(
            truncate(queries, d), truncate(candidates, d), nesting, 1 / self.temperature, self.fused
        )  # (G, N, N + N*H)
        loss = self._info_nce(logits, len(queries))
        if self.distill_weight > 0:
            teacher = logits[-1]
            if d != self.nesting.embed_dim:  # the drawn sizes left the full size out
                with torch.no_grad():
                    full = Nesting((self.nesting.embed_dim,))
                    teacher = _scaled_similarities(
                        queries, candidates, full, 1 / self.temperature, self.fused
                    )[0]
            loss = loss + self.distill_weight * self._distillation(logits, teacher.detach())
        return loss

    def _info_nce(self, logits: torch.Tensor, n: int) -> torch.Tensor:
        """[G] InfoNCE of logits (G, N, C) whose target is the diagonal; the positive -> query
        direction (column-wise over the first n candidates, the in-batch queries) averaged in
        when symmetric."""
        # As logsumexp - target logit: the same value as cross_entropy, without its gather and
        # (for the backward direction) without a transposed copy of the logits; measured
        # faster on CPU.
        target = logits.diagonal(dim1=1, dim2=2).mean(1)  # (G,)
        loss = logits.logsumexp(dim=2).mean(1) - target
        if self.symmetric:
            loss = (loss + logits[:, :, :n].logsumexp(dim=1).mean(1) - target) / 2
        return loss

    def _distillation(self, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """[G] mean KL(teacher || student) of each size's softmax rows (and, when symmetric,
        of its in-batch columns), both at `distill_temperature`; `teacher` is the detached
        full-size logits (N, C) at the InfoNCE temperature."""
        rescale = self.temperature / self.distill_temperature
        student, teacher = logits * rescale, teacher * rescale
        n = teacher.shape[0]

        def kl(dim: int, width: int) -> torch.Tensor:
            log_t = teacher[:, :width].log_softmax(dim - 1)
            log_s = student[:, :, :width].log_softmax(dim)
            per_row = (log_t.exp() * (log_t - log_s)).sum(dim)  # (G, N)
            return per_row.mean(1)

        loss = kl(2, teacher.shape[1])
        if self.symmetric:
            loss = (loss + kl(1, n)) / 2
        return loss

    def _candidates(self, queries, positives, negatives) -> torch.Tensor:
        """[N + N*H, d]: the positives, then every hard negative; inputs checked."""
        _check_pair(queries, positives, self.nesting, "queries", "positives")
        if queries.shape != positives.shape:
            raise InputError(
                f"queries {tuple(queries.shape)} and positives {tuple(positives.shape)} must "
                "have the same shape: one positive per query"
            )
        n, d = queries.shape
        if negatives is None:
            if n < 2:
                raise InputError(
                    "a batch of 1 pair without hard negatives has no in-batch negative (the "
                    "loss would be 0); use a batch of at least 2 pairs or pass negatives"
                )
            return positives
        if not isinstance(negatives, torch.Tensor) or negatives.ndim not in (2, 3):
            shape = tuple(negatives.shape) if isinstance(negatives, torch.Tensor) else None
            raise InputError(
                f"negatives must be a tensor [N, d] or [N, H, d], got "
                f"{shape if shape is not None else type(negatives).__name__}"
            )
        if negatives.shape[0] != n or negatives.shape[-1] != d or negatives.numel() == 0:
            raise InputError(
                f"negatives {tuple(negatives.shape)} must be [N, d] or [N, H, d] with N = {n} "
                f"queries, H >= 1 and d = {d}"
            )
        negatives = negatives.reshape(-1, d)
        _check_pair(queries, negatives, self.nesting, "queries", "negatives")
        return torch.cat([positives, negatives])
