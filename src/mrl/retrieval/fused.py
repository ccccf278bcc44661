"""A shortlist re-scored once at full D, as one compiled faiss call (`faiss.IndexRefine`).

The plan most tuned indexes serve is `Rerank(D_s, D, s)`: the ANN finds `s` candidates at
the D_s-prefix and one rerank step re-scores them at full D. Run step by step (`search`),
each step is a handful of NumPy calls around faiss; for one query of a small embedding
(D = 384, a 40 us HNSW search) those calls cost as much as the search itself. `FusedRerank`
runs the whole plan inside faiss: an `IndexRefine` whose base is the index's own ANN
structure (behind a transform that keeps the first D_s of the D query dims, when D_s < D)
and whose refine index holds a unit-norm float32 copy of the full vectors, so a refine
distance is the full-D cosine the unfused path computes. The copy costs 4 N D bytes of RAM
beside the stored vectors; `MatryoshkaIndex.use_fused_rerank` turns it on or off.
"""

from __future__ import annotations

from functools import lru_cache

import faiss
import numpy as np


class FusedRerank:
    """`faiss.IndexRefine` over an ANN structure of `shortlist_dim`-prefixes and unit full rows.

    `index` is what to search: float32 full-D queries of any norm (normalised inside), with
    `refine_params(...)`; it answers cosine scores and storage rows.

    Args:
        ann: the index's faiss ANN over unit D_s-prefixes (shared, not copied or owned).
        dim: D, the full width.
        shortlist_dim: D_s.
        n_rows: how many rows the ANN holds.
        unit_blocks: (start row, unit-norm float32 [b, D] block) pairs covering every stored
            row (faiss wants the copy as full as the ANN before it pairs them).
    """

    def __init__(self, ann: faiss.Index, dim: int, shortlist_dim: int, n_rows: int, unit_blocks):
        self.refine = faiss.IndexFlatIP(dim)
        if n_rows:
            # One allocation of the final size, filled in place: appending block by block
            # makes faiss reallocate and copy as the copy grows (300,000 x 2,048: 12 s
            # against 5 s on a 2-core host).
            self.refine.codes.resize(n_rows * dim * 4)
            rows = faiss.rev_swig_ptr(self.refine.codes.data(), n_rows * dim * 4)
            rows = rows.view(np.float32).reshape(n_rows, dim)
            for start, block in unit_blocks:
                rows[start : start + len(block)] = block
            self.refine.ntotal = n_rows
        if shortlist_dim == dim:
            self.base = ann
        else:  # the first D_s dims of each query (`uniform=False`), then the ANN
            self.prefix = faiss.RemapDimensionsTransform(dim, shortlist_dim, False)
            self.base = faiss.IndexPreTransform(self.prefix, ann)
        self.ann = ann  # the Python objects keep the C++ ones they point to alive
        self.refined = faiss.IndexRefine(self.base, self.refine)
        # The query is made unit-norm inside faiss too (a zero query stays zero): for one
        # query, the five NumPy calls of a normalisation cost a tenth of the search.
        self.unit = faiss.NormalizationTransform(dim, 2.0)
        self.index = faiss.IndexPreTransform(self.unit, self.refined)

    def add(self, unit_rows: np.ndarray) -> None:
        """Append unit-norm full rows (the base ANN is filled by its owner, not here)."""
        self.refine.add(np.ascontiguousarray(unit_rows, dtype=np.float32))
        self.refined.ntotal = self.index.ntotal = self.refine.ntotal

    @property
    def nbytes(self) -> int:
        """Bytes of the resident float32 copy."""
        return self.refine.ntotal * self.refine.d * 4


def refine_params(base: faiss.SearchParameters, candidates: int, n: int):
    """`IndexRefine` parameters that make the base return `candidates` rows for `n` results.

    faiss asks the base for `int(n * k_factor)` rows; `(candidates + 0.5) / n` makes that
    product land half a row above `candidates`, so rounding never loses one. The base's own
    parameters are referenced from the returned object's `base_params` (faiss keeps a raw
    pointer to them).
    """
    params = faiss.IndexRefineSearchParameters(
        k_factor=(candidates + 0.5) / n, base_index_params=base
    )
    params.base_params = base
    return params


@lru_cache(maxsize=256)
def shared_refine_params(base: faiss.SearchParameters, candidates: int, n: int):
    """`refine_params` for selector-free base parameters, made once and shared (read-only)."""
    return refine_params(base, candidates, n)
