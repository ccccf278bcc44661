"""`MatryoshkaAdaptor`: a learned map from frozen embeddings to nested (Matryoshka) embeddings.

Any model's d-dim embeddings (an `mrl embed` folder, an .npy from an API) go through a small
map f: R^d -> R^D whose every prefix of the nesting m_1 < ... < m_G = D is a good embedding
on its own, so the adapted vectors can be truncated like an MRL model's.

Architecture (the documented choice): a linear layer with orthonormal rows (a rotation,
kept orthonormal by `torch.nn.utils.parametrizations.orthogonal`) initialised at the PCA
rotation of the training embeddings (centred, components by decreasing variance,
`SVDProjection`), so before any step f is exactly PCA rotate-then-truncate, the strongest cheap
baseline, and training moves it only where the loss says it is better. Orthonormal rows let
the prefixes choose directions but never reweight them: an unconstrained map learned to
inflate the first coordinates (which sharpens small prefixes) and so distorted the full size
(recall@10 at 64 of 64 dims 0.94-0.96, against 0.99 with the constraint, on the clustered set
of tests/test_adaptor.py).
`hidden > 0` adds a residual MLP on top, z + MLP(z), with the MLP's last layer initialised at
zero (the paper's skip connection), which again starts at PCA; `hidden = 0` is linear only:
cheap to apply, and unable to overfit a small corpus the way an MLP can.

What is optimised, per minibatch of B rows x: let S be the cosine similarities of the
ORIGINAL full embeddings, [B, B], and S_m those of the adapted prefixes of size m, each prefix
L2-normalised on its own (`prefix_similarities`), diagonals excluded.

- unsupervised (default): sum_m c_m * (rank_weight * mean_i KL(softmax(S_i / t) ||
  softmax(S_m,i / t)) + sim_weight * mean_{i != j} (S_m - S)^2). The first term makes each
  row's neighbour distribution at size m match the full one's; a temperature t = 0.05 puts
  almost all its mass on the nearest neighbours, so it is a soft top-k ranking loss. The
  second keeps the global similarity values. These are the top-k and pairwise similarity
  losses of the Matryoshka-Adaptor paper, with the top-k one made a smooth ranking loss: its
  squared-error form alone (sim_weight only) stayed at PCA or fell below it in our tests,
  because a 4-dim prefix cannot reproduce the small cosines of a 64-dim space and the error
  on all pairs swamps the nearest ones. Its reconstruction regulariser is not needed: the
  rotation keeps the output space fixed.
- supervised (`fit(queries, positives)`): `MatryoshkaContrastiveLoss` (symmetric InfoNCE with
  in-batch negatives at every size, temperature t) on the adapted pairs.

Measured (all-MiniLM-L6-v2, 4,000 train-side Debian descriptions, 5 epochs, 28 s on 2 CPU
cores; 2,000 test-side summary -> description queries, MRR@10 at 12/24/48/96/192/384 dims):
truncation .207/.439/.641/.763/.814/.834, PCA .284/.493/.679/.779/.828/.837, unsupervised
adaptor .336/.564/.704/.785/.822/.832, supervised (4,000 train pairs, lr 1e-3)
.418/.632/.751/.816/.838/.840.

References:
    Yoon et al., "Matryoshka-Adaptor: Unsupervised and Supervised Tuning for Smaller Embedding
    Dimensions", EMNLP 2024, arXiv 2407.20243. Kusupati et al., arXiv 2205.13147 (MRL).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mrl.checks import check_finite_rows, check_int, check_number, check_tag, require_keys
from mrl.errors import (
    ConfigError,
    FormatError,
    InputError,
    MissingPathError,
    NotFittedError,
    PathError,
)
from mrl.evaluation.baselines import SVDProjection
from mrl.io import atomic_torch_save, atomic_write_json, make_dirs
from mrl.nesting import Nesting, check_nesting
from mrl.nn.contrastive import MatryoshkaContrastiveLoss, prefix_similarities

log = logging.getLogger(__name__)

FORMAT, VERSION = "mrl-adaptor", 1
WEIGHTS, MANIFEST = "adaptor.pt", "manifest.json"
MANIFEST_KEYS = ("format", "version", "d_in", "out_dim", "nesting", "mode", "params")
REFIT = "fit and save the adaptor again (`mrl adapt fit`)"
_CHUNK = 65536  # rows per transform chunk: memmaps of any length stream through


class _AdaptorNet(nn.Module):
    """z = W x + b (PCA-initialised), then z + MLP(z) when `hidden` > 0."""

    def __init__(self, d_in: int, d_out: int, hidden: int) -> None:
        super().__init__()
        # rows kept orthonormal: prefixes can only choose directions, never reweight them
        self.linear = nn.utils.parametrizations.orthogonal(nn.Linear(d_in, d_out))
        self.mlp = (
            nn.Sequential(nn.Linear(d_out, hidden), nn.GELU(), nn.Linear(hidden, d_out))
            if hidden
            else None
        )

    def init_pca(self, pca: SVDProjection) -> None:
        """Start at PCA rotate-then-truncate: W = components, b = -W mean, MLP output 0."""
        w = torch.from_numpy(pca.components_)  # (D, d)
        with torch.no_grad():
            self.linear.weight = w
            self.linear.bias.copy_(-(w @ torch.from_numpy(pca.mean_)))
            if self.mlp is not None:
                nn.init.zeros_(self.mlp[-1].weight)
                nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)  # (B, D)
        return z if self.mlp is None else z + self.mlp(z)


class MatryoshkaAdaptor:
    """Learned map from frozen [N, d] embeddings to [N, D] embeddings with good prefixes.

    Follows the scikit-learn contract: `__init__` stores the parameters, `fit` validates them
    and the data, sets the attributes ending in `_` and returns self. The objective and the
    architecture are described in the module docstring.

    Args:
        nesting: the prefix sizes (and weights c_m) to make good; it must end at `out_dim`.
            None: `Nesting.halving(out_dim)` (D, D/2, ... down to >= 8).
        out_dim: D, the adapted width, 1..d; None: the nesting's last size, or d.
        hidden: width of the residual MLP; 0 is linear only.
        epochs: passes over the training rows.
        batch_size: rows per step (the similarity matrices are [batch, batch]); >= 2.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        rank_weight: weight of the neighbour-distribution (KL) term (unsupervised).
        sim_weight: weight of the all-pairs squared similarity error (unsupervised).
        temperature: softmax temperature of the neighbour distributions (unsupervised) and of
            InfoNCE (supervised).
        seed: seeds the MLP's initialisation and the batch order; a fit repeats exactly.
        device: torch device to train on ("cpu" is fine for linear adaptors).
        progress: show a tqdm bar while fitting.

    Attributes (after `fit`):
        d_in_: d. out_dim_: D. nesting_: the `Nesting` used. mode_: "unsupervised" or
        "supervised". pca_: the `SVDProjection` (all d components) of the start.
        net_: the torch module. loss_history_: mean training loss of each epoch.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(256, 16)).astype(np.float32)
        >>> a = MatryoshkaAdaptor(Nesting((4, 8, 16)), epochs=1, progress=False).fit(X)
        >>> a.transform(X).shape
        (256, 16)
    """

    def __init__(
        self,
        nesting: Nesting | None = None,
        out_dim: int | None = None,
        hidden: int = 0,
        epochs: int = 5,
        batch_size: int = 256,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        rank_weight: float = 1.0,
        sim_weight: float = 0.1,
        temperature: float = 0.05,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = True,
    ) -> None:
        self.nesting = nesting
        self.out_dim = out_dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.rank_weight = rank_weight
        self.sim_weight = sim_weight
        self.temperature = temperature
        self.seed = seed
        self.device = device
        self.progress = progress

    # -- parameters -------------------------------------------------------------------------

    def get_params(self) -> dict:
        """The constructor parameters as JSON-ready values (the nesting as a dict)."""
        params = {k: getattr(self, k) for k in _PARAMS}
        if isinstance(self.nesting, Nesting):
            params["nesting"] = self.nesting.to_dict()
        return params

    def _check_params(self, d_in: int) -> Nesting:
        """Validate every parameter for d_in-dim inputs; the nesting to train."""
        if self.out_dim is not None:
            check_int(f"out_dim (the adapted width, at most d = {d_in})", self.out_dim, 1, d_in)
        check_int("hidden (MLP width; 0 for a linear adaptor)", self.hidden, low=0)
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size, low=2)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0)
        check_number("rank_weight", self.rank_weight, low=0)
        check_number("sim_weight", self.sim_weight, low=0)
        if self.rank_weight == 0 and self.sim_weight == 0:
            raise ConfigError("rank_weight and sim_weight are both 0: the loss would be 0")
        check_number("temperature", self.temperature, low=0, low_open=True)
        check_int("seed", self.seed, low=0)
        if not isinstance(self.progress, bool):
            raise ConfigError(f"progress must be True or False, got {self.progress!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ConfigError(
                f"device {self.device!r} is not a torch device (e.g. 'cpu')"
            ) from None
        if self.nesting is None:
            return Nesting.halving(self.out_dim or d_in)
        nesting = check_nesting(self.nesting)
        out_dim = self.out_dim if self.out_dim is not None else d_in
        if nesting.embed_dim != out_dim:
            fix = (
                f"end the nesting at {out_dim}"
                if self.out_dim is not None
                else f"end it at {d_in} or set out_dim={nesting.embed_dim} to narrow the output"
            )
            raise ConfigError(
                f"nesting {list(nesting.dims)} ends at {nesting.embed_dim} but the adapted "
                f"embeddings have {out_dim} dims (out_dim); {fix}"
            )
        return nesting

    # -- fit / transform --------------------------------------------------------------------

    def fit(self, X: np.ndarray, positives: np.ndarray | None = None) -> MatryoshkaAdaptor:
        """Fit on frozen embeddings X [N, d] (unsupervised), or on pairs (supervised).

        Args:
            X: [N, d] float embeddings (a memmap is fine: batches are read as needed). With
                `positives`, the query side of the pairs.
            positives: optional [N, d]; positives[i] matches X[i]: supervised contrastive mode.
                The PCA start is then fitted on both sides.

        Raises:
            ConfigError: a bad parameter (named, with its range), or a nesting that does not
                end at the adapted width.
            InputError: X (or positives) not a 2-D float array, empty or a single row, NaN/inf
                (naming the first bad row), or positives of another shape than X.
        """
        X = _check_embeddings(X, "embeddings", min_rows=2)
        n, d = X.shape
        nesting = self._check_params(d)
        if positives is not None:
            positives = _check_embeddings(positives, "positives", min_rows=2)
            if positives.shape != X.shape:
                raise InputError(
                    f"positives {positives.shape} must have the shape of the queries {X.shape}: "
                    "one positive per query row"
                )
        check_finite_rows(X, "embeddings")
        if positives is not None:
            check_finite_rows(positives, "positives")
        pca_rows = X if positives is None else np.concatenate([X, positives])
        self.pca_ = SVDProjection(nesting.embed_dim).fit(pca_rows)
        self.d_in_, self.out_dim_, self.nesting_ = d, nesting.embed_dim, nesting
        self.mode_ = "unsupervised" if positives is None else "supervised"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = _AdaptorNet(d, self.out_dim_, self.hidden)
        net.init_pca(self.pca_)
        self.net_ = net.to(self.device)
        self.loss_history_ = self._train(X, positives)
        return self

    def _train(self, X: np.ndarray, positives: np.ndarray | None) -> list[float]:
        """AdamW over seeded shuffled minibatches; the mean loss of each epoch."""
        n = len(X)
        batch = min(self.batch_size, n)
        steps = n // batch  # a short last batch is dropped: its similarity matrix is tiny
        contrastive = (
            None
            if positives is None
            else MatryoshkaContrastiveLoss(self.nesting_, temperature=self.temperature)
        )
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        rng = np.random.default_rng(self.seed)
        history = []
        bar = tqdm(
            total=self.epochs * steps, desc=f"adapt ({self.mode_})", disable=not self.progress
        )
        self.net_.train()
        for _ in range(self.epochs):
            order = rng.permutation(n)
            total = 0.0
            for s in range(steps):
                idx = np.sort(order[s * batch : (s + 1) * batch])  # sorted: memmap-friendly
                x = self._tensor(X[idx])  # (B, d)
                if contrastive is None:
                    loss = self._unsupervised_loss(x)
                else:
                    loss = contrastive(self.net_(x), self.net_(self._tensor(positives[idx])))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.4g}")
            history.append(total / steps)
            log.info("adaptor epoch %d: loss %.6g", len(history), history[-1])
        bar.close()
        self.net_.eval()
        return history

    def _tensor(self, rows: np.ndarray) -> torch.Tensor:
        """Rows as a float32 tensor on our device (copied: a read-only memmap stays intact)."""
        return torch.from_numpy(np.array(rows, dtype=np.float32)).to(self.device)

    def _unsupervised_loss(self, x: torch.Tensor) -> torch.Tensor:
        """sum_m c_m (rank_weight * KL + sim_weight * squared error), as the module says."""
        xn = nn.functional.normalize(x, dim=1)
        target = xn @ xn.T  # (B, B) cosine similarities of the original full embeddings
        y = self.net_(x)  # (B, D)
        sims = prefix_similarities(y, y, self.nesting_)  # (G, B, B)
        off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
        per_size = self.sim_weight * ((sims - target) ** 2)[:, off].mean(1)  # (G,)
        if self.rank_weight:
            t, self_pair = self.temperature, ~off  # a row's own entry is not a neighbour
            log_p = torch.log_softmax(target.masked_fill(self_pair, -torch.inf) / t, 1)
            log_q = torch.log_softmax(sims.masked_fill(self_pair, -torch.inf) / t, 2)
            kl = (log_p.exp() * (log_p - log_q)).masked_fill(self_pair, 0).sum(2).mean(1)
            per_size = per_size + self.rank_weight * kl
        return self.nesting_.weight_tensor(per_size) @ per_size

    def objective(self, X: np.ndarray, positives: np.ndarray | None = None) -> float:
        """The training loss of the current map on X (or pairs), mean over full batches.

        A validation number: evaluate it on held-out rows to compare adaptors or to see
        overfitting. Batches are taken in row order (no shuffling), so it is deterministic.
        """
        self._check_fitted()
        X = self._check_input(X, min_rows=2)
        batch = min(self.batch_size, len(X))
        contrastive = (
            None
            if positives is None
            else MatryoshkaContrastiveLoss(self.nesting_, temperature=self.temperature)
        )
        if positives is not None:
            positives = self._check_input(positives, "positives", min_rows=2)
        losses = []
        with torch.no_grad():
            for s in range(0, len(X) - batch + 1, batch):
                x = self._tensor(X[s : s + batch])
                if contrastive is None:
                    losses.append(self._unsupervised_loss(x).item())
                else:
                    p = self._tensor(positives[s : s + batch])
                    losses.append(contrastive(self.net_(x), self.net_(p)).item())
        return float(np.mean(losses))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """[N, d] frozen embeddings -> [N, D] float32 adapted ones (prefixes per `nesting_`).

        Raises:
            NotFittedError: before `fit` (or `load`).
            InputError: not 2-D float, empty, another width than the fit's (both named), or
                NaN/inf rows (the first named).
        """
        self._check_fitted()
        X = self._check_input(X)
        out = np.empty((len(X), self.out_dim_), dtype=np.float32)
        with torch.no_grad(), nn.utils.parametrize.cached():
            for s in range(0, len(X), _CHUNK):
                chunk = np.asarray(X[s : s + _CHUNK])
                check_finite_rows(chunk, "embeddings", row_offset=s)
                out[s : s + _CHUNK] = self.net_(self._tensor(chunk)).cpu().numpy()
        return out

    def fit_transform(self, X: np.ndarray, positives: np.ndarray | None = None) -> np.ndarray:
        return self.fit(X, positives).transform(X)

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError(
                "this MatryoshkaAdaptor is not fitted; call fit(X) or MatryoshkaAdaptor.load(dir)"
            )

    def _check_input(self, X: np.ndarray, what: str = "embeddings", min_rows: int = 1):
        X = _check_embeddings(X, what, min_rows)
        if X.shape[1] != self.d_in_:
            raise InputError(
                f"{what} have {X.shape[1]} dims but the adaptor was fitted on {self.d_in_}-dim "
                "embeddings; apply it to embeddings of the model it was fitted on"
            )
        return X

    # -- save / load ------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `folder`/adaptor.pt (the state dict) and manifest.json (written last).

        The manifest is removed first and rewritten after the weights, so a folder with a
        manifest always holds a whole adaptor, even after a crash.

        Raises:
            NotFittedError: before `fit`.
            PathError: `folder` is a file, lies under one, or cannot be created.
        """
        self._check_fitted()
        out = make_dirs(folder, "adaptor folder")
        (out / MANIFEST).unlink(missing_ok=True)
        state = {k: v.detach().cpu() for k, v in self.net_.state_dict().items()}
        atomic_torch_save(state, out / WEIGHTS)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "d_in": self.d_in_,
            "out_dim": self.out_dim_,
            "nesting": self.nesting_.to_dict(),
            "mode": self.mode_,
            "params": {
                **self.get_params(),
                "nesting": self.nesting_.to_dict(),
                "out_dim": self.out_dim_,
            },
            "loss_history": self.loss_history_,
            "files": {"weights": WEIGHTS},
        }
        atomic_write_json(out / MANIFEST, manifest)
        log.info("saved the adaptor (%d -> %d dims) to %s", self.d_in_, self.out_dim_, out)
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str = "cpu") -> MatryoshkaAdaptor:
        """An adaptor saved by `save`, after checking the manifest against the weights.

        Raises:
            MissingPathError: no folder, manifest or weights file.
            FormatError: a manifest that is not JSON, not an mrl adaptor's (format tag or
                version), lacks a key or holds bad values; weights that are truncated, not a
                torch file, or disagree with the manifest (naming the tensor and both shapes).
        """
        folder = Path(folder)
        path = folder / MANIFEST
        if folder.is_file():
            raise PathError(f"{folder} is a file; give the folder `mrl adapt fit --out` wrote")
        if not path.is_file():
            raise MissingPathError(f"{path} not found; {REFIT}")
        try:
            manifest = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise FormatError(f"{path} is not valid JSON; {REFIT}") from None
        check_tag(manifest, FORMAT, VERSION, path, "adaptor")
        require_keys(manifest, MANIFEST_KEYS, path)
        if manifest["mode"] not in MODES or not isinstance(manifest["params"], dict):
            raise FormatError(f"{path}: mode {manifest['mode']!r} or params are not valid")
        try:
            params = {k: v for k, v in manifest["params"].items() if k in _PARAMS}
            params["nesting"] = Nesting.from_dict(manifest["nesting"])
            params["out_dim"] = manifest["out_dim"]
            adaptor = cls(**{**params, "device": device})
            d_in = check_int("d_in", manifest["d_in"])
            nesting = adaptor._check_params(d_in)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise FormatError(f"{path} holds invalid values ({e}); {REFIT}") from None
        weights = folder / WEIGHTS
        if not weights.is_file():
            raise MissingPathError(f"{weights} is missing; {REFIT}")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, a pickle of foreign objects, not torch at all
            raise FormatError(
                f"{weights} is not a whole mrl adaptor weights file ({type(e).__name__}); {REFIT}"
            ) from None
        net = _AdaptorNet(d_in, nesting.embed_dim, adaptor.hidden)
        _check_state(state, net.state_dict(), weights, path)
        net.load_state_dict(state)
        adaptor.d_in_, adaptor.out_dim_, adaptor.nesting_ = d_in, nesting.embed_dim, nesting
        adaptor.mode_ = manifest["mode"]
        adaptor.loss_history_ = list(manifest.get("loss_history", []))
        adaptor.net_ = net.to(device).eval()
        return adaptor


_PARAMS = (
    "nesting",
    "out_dim",
    "hidden",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "rank_weight",
    "sim_weight",
    "temperature",
    "seed",
    "device",
    "progress",
)
MODES = ("unsupervised", "supervised")


def _check_embeddings(X: object, what: str, min_rows: int = 1) -> np.ndarray:
    """X if it is a 2-D floating-point array with at least `min_rows` rows and one column."""
    if not isinstance(X, np.ndarray):
        raise InputError(f"{what} must be a NumPy array [N, d], got {type(X).__name__}")
    if X.ndim != 2 or X.shape[1] == 0:
        raise InputError(f"{what} must be a 2-D [N, d] array, got shape {X.shape}")
    if len(X) < min_rows:
        need = "at least 2 rows (similarities need pairs)" if min_rows > 1 else "at least 1 row"
        raise InputError(f"{what} have {len(X)} rows (shape {X.shape}); give {need}")
    if not np.issubdtype(X.dtype, np.floating):
        raise InputError(f"{what} must be floating point (float32), got dtype {X.dtype}")
    return X


def _check_state(state: object, expected: dict, weights: Path, manifest: Path) -> None:
    """Refuse a state dict whose tensors differ from what the manifest's shapes need."""
    if not isinstance(state, dict):
        raise FormatError(f"{weights} holds a {type(state).__name__}, not adaptor weights; {REFIT}")
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise FormatError(
            f"{weights} does not match {manifest}: missing tensors {missing}, unexpected "
            f"{extra} (hidden or widths differ); {REFIT}"
        )
    for key, want in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise FormatError(
                f"{weights}: tensor {key!r} has shape {shape} but {manifest} needs "
                f"{tuple(want.shape)}; the folder was edited or mixed from two fits ({REFIT})"
            )
