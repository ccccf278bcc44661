"""mrl.nn.contrastive: the fused loss against a hand-written per-size InfoNCE, and bad input."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from bench_helpers import load_benchmark

from mrl.errors import ConfigError, InputError
from mrl.nesting import Nesting
from mrl.nn import MatryoshkaContrastiveLoss, prefix_similarities

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "contrastive_fused.py"
NESTING = Nesting((2, 4, 8, 16), (1.0, 0.5, 2.0, 1.0))


def reference_loss(q, p, neg, nesting, temperature, symmetric):
    """Loop reference: per size, normalise the prefixes, InfoNCE on the diagonal, weight, sum."""
    total = 0.0
    n = len(q)
    target = torch.arange(n)
    for m, w in zip(nesting.dims, nesting.weights, strict=True):
        qm = F.normalize(q[:, :m], dim=1)
        pm = F.normalize(p[:, :m], dim=1)
        cand = pm
        if neg is not None:
            cand = torch.cat([pm, F.normalize(neg.reshape(-1, neg.shape[-1])[:, :m], dim=1)])
        loss = F.cross_entropy(qm @ cand.T / temperature, target)
        if symmetric:
            loss = (loss + F.cross_entropy(pm @ qm.T / temperature, target)) / 2
        total = total + w * loss
    return total


def inputs(n=5, h=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 16, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(n, 16, generator=g, dtype=torch.float64, requires_grad=True)
    neg = None
    if h is not None:
        shape = (n, 16) if h == 0 else (n, h, 16)
        neg = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    return q, p, neg


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("h", [None, 0, 3], ids=["in-batch", "one-negative", "three-negatives"])
def test_loss_and_gradients_equal_hand_written_per_size_infonce(fused, symmetric, h):
    q, p, neg = inputs(h=h)
    loss_fn = MatryoshkaContrastiveLoss(NESTING, temperature=0.1, symmetric=symmetric, fused=fused)
    loss = loss_fn(q, p, neg)
    expected = reference_loss(q, p, neg, NESTING, 0.1, symmetric)
    torch.testing.assert_close(loss, expected)
    wrt = [t for t in (q, p, neg) if t is not None]
    grads = torch.autograd.grad(loss, wrt)
    expected_grads = torch.autograd.grad(expected, wrt)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_per_size_is_the_unweighted_loss_of_each_size():
    q, p, _ = inputs()
    per_size = MatryoshkaContrastiveLoss(NESTING, temperature=0.2).per_size(q, p)
    expected = [reference_loss(q, p, None, Nesting((m,)), 0.2, True) for m in NESTING.dims]
    torch.testing.assert_close(per_size, torch.stack(expected))


@pytest.mark.parametrize("nesting", [NESTING, Nesting((4, 8, 12, 16)), Nesting((16,))])
def test_fused_similarities_equal_one_matmul_per_size(nesting):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(7, 16, generator=g), torch.randn(9, 16, generator=g)
    a[0, :4] = 0  # an all-zero prefix: similarity 0, as `truncate` gives
    fused = prefix_similarities(a, b, nesting)
    plain = prefix_similarities(a, b, nesting, fused=False)
    assert fused.shape == (len(nesting), 7, 9)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    for i, m in enumerate(nesting.dims):
        torch.testing.assert_close(
            fused[i],
            F.normalize(a[:, :m], dim=1) @ F.normalize(b[:, :m], dim=1).T,
            atol=1e-5,
            rtol=1e-5,
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_rows_of_large_norm_do_not_overflow(dtype):
    # Rows of norm ~2000: float16 squared norms and block dot products would overflow (65504).
    g = torch.Generator().manual_seed(2)
    a, b = 100 * torch.randn(6, 16, generator=g), 100 * torch.randn(6, 16, generator=g)
    reference = prefix_similarities(a.double(), b.double(), NESTING)
    fused = prefix_similarities(a.to(dtype), b.to(dtype), NESTING)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused.double(), reference, atol=2e-2, rtol=0)
    x = a.to(dtype).requires_grad_()
    MatryoshkaContrastiveLoss(NESTING)(x, b.to(dtype)).backward()
    assert torch.isfinite(x.grad).all()


def test_zero_prefix_has_finite_gradients():
    a = torch.zeros(3, 16, requires_grad=True)
    b = torch.randn(3, 16)
    prefix_similarities(a, b, NESTING).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_n_dims_per_step_draws_k_sizes_reproducibly_with_the_seed():
    q, p, _ = inputs()
    per_size = MatryoshkaContrastiveLoss(NESTING).per_size(q, p).detach()
    weights = torch.tensor(NESTING.weights, dtype=torch.float64)

    def run(seed):
        loss_fn = MatryoshkaContrastiveLoss(NESTING, n_dims_per_step=2, seed=seed)
        draws = [loss_fn.draw_sizes() for _ in range(6)]
        loss_fn = MatryoshkaContrastiveLoss(NESTING, n_dims_per_step=2, seed=seed)
        losses = [loss_fn(q, p).detach() for _ in range(6)]
        return draws, losses

    draws, losses = run(0)
    draws_again, losses_again = run(0)
    for idx, again, loss, loss_again in zip(draws, draws_again, losses, losses_again, strict=True):
        assert len(idx) == 2 and len(set(idx.tolist())) == 2
        assert torch.equal(idx, again)
        # Weights are not renormalised: the loss is sum over the drawn sizes of c_m * loss_m.
        torch.testing.assert_close(loss, weights[idx] @ per_size[idx])
        torch.testing.assert_close(loss, loss_again)
    assert len({tuple(i.tolist()) for i in draws}) > 1  # the subset changes from step to step
    other, _ = run(1)
    assert any(not torch.equal(a, b) for a, b in zip(draws, other, strict=True))


def test_n_dims_per_step_equal_to_g_is_the_full_loss():
    q, p, _ = inputs()
    full = MatryoshkaContrastiveLoss(NESTING)(q, p)
    torch.testing.assert_close(MatryoshkaContrastiveLoss(NESTING, n_dims_per_step=4)(q, p), full)


def reference_distillation(q, p, neg, nesting, temperature, symmetric, weight, kd_temperature):
    """Loop reference of the self-distillation term: per size, F.kl_div of the prefix's
    softmax against the detached full size's, rows over all candidates, columns over the
    in-batch queries, weighted by c_m and `weight`, summed."""

    def scores(m):
        qm, pm = F.normalize(q[:, :m], dim=1), F.normalize(p[:, :m], dim=1)
        cand = pm
        if neg is not None:
            cand = torch.cat([pm, F.normalize(neg.reshape(-1, neg.shape[-1])[:, :m], dim=1)])
        return qm @ cand.T / kd_temperature, pm @ qm.T / kd_temperature

    def kl(student, teacher):
        return F.kl_div(
            student.log_softmax(1), teacher.log_softmax(1), log_target=True, reduction="batchmean"
        )

    rows_t, cols_t = (t.detach() for t in scores(q.shape[1]))
    total = 0.0
    for m, w in zip(nesting.dims, nesting.weights, strict=True):
        rows, cols = scores(m)
        loss = kl(rows, rows_t)
        if symmetric:
            loss = (loss + kl(cols, cols_t)) / 2
        total = total + w * weight * loss
    return total


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("h", [None, 3], ids=["in-batch", "three-negatives"])
@pytest.mark.parametrize("kd_temperature", [None, 0.5])
def test_distillation_adds_each_prefix_kl_to_the_detached_full_size(symmetric, h, kd_temperature):
    q, p, neg = inputs(h=h)
    loss_fn = MatryoshkaContrastiveLoss(
        NESTING, 0.1, symmetric, distill_weight=0.7, distill_temperature=kd_temperature
    )
    loss = loss_fn(q, p, neg)
    expected = reference_loss(q, p, neg, NESTING, 0.1, symmetric) + reference_distillation(
        q, p, neg, NESTING, 0.1, symmetric, 0.7, kd_temperature or 0.1
    )
    torch.testing.assert_close(loss, expected)
    wrt = [t for t in (q, p, neg) if t is not None]
    for got, want in zip(
        torch.autograd.grad(loss, wrt), torch.autograd.grad(expected, wrt), strict=True
    ):
        torch.testing.assert_close(got, want)
    # The term moves the prefixes only: it is 0 at the full size, and the loss differs.
    per_size = loss_fn.per_size(q, p, neg)
    plain = MatryoshkaContrastiveLoss(NESTING, 0.1, symmetric).per_size(q, p, neg)
    torch.testing.assert_close(per_size[-1], plain[-1])
    assert (per_size[:-1] > plain[:-1] + 1e-6).all()


def test_distillation_keeps_the_full_size_teacher_when_the_draw_leaves_it_out():
    q, p, _ = inputs()
    loss_fn = MatryoshkaContrastiveLoss(NESTING, n_dims_per_step=1, seed=0, distill_weight=1.0)
    per_size = loss_fn.per_size(q, p).detach()
    seen = set()
    for _ in range(12):
        state = loss_fn.generator.get_state()
        (idx,) = loss_fn.draw_sizes().tolist()
        loss_fn.generator.set_state(state)
        seen.add(idx)
        torch.testing.assert_close(loss_fn(q, p).detach(), NESTING.weights[idx] * per_size[idx])
    assert seen - {len(NESTING) - 1}  # some draws left the full size out


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"temperature": 0}, ConfigError, r"temperature must be a finite number in \(0, inf\]"),
        ({"temperature": -0.1}, ConfigError, "temperature must be a finite number"),
        ({"temperature": float("nan")}, ConfigError, "temperature must be a finite number"),
        ({"temperature": "0.05"}, ConfigError, "temperature must be a number, got '0.05'"),
        ({"n_dims_per_step": 0}, ConfigError, r"n_dims_per_step .* must be in 1..4, got 0"),
        ({"n_dims_per_step": 5}, ConfigError, r"n_dims_per_step .* must be in 1..4, got 5"),
        ({"n_dims_per_step": 1.5}, ConfigError, "n_dims_per_step .* must be an int"),
        ({"nesting": [2, 4, 8, 16]}, ConfigError, r"nesting must be a Nesting, e.g. Nesting\("),
        ({"symmetric": "yes"}, ConfigError, "symmetric and fused must be True or False"),
        ({"seed": -1}, ConfigError, "seed must be >= 0"),
        ({"distill_weight": -1}, ConfigError, "distill_weight must be a finite number"),
        ({"distill_temperature": 0}, ConfigError, "distill_temperature must be a finite"),
    ],
)
def test_bad_parameters_are_named(kwargs, error, match):
    kwargs = {"nesting": NESTING, **kwargs}
    with pytest.raises(error, match=match):
        MatryoshkaContrastiveLoss(**kwargs)


@pytest.mark.parametrize(
    "q, p, neg, error, match",
    [
        (
            (4, 16),
            (3, 16),
            None,
            InputError,
            r"queries \(4, 16\) and positives \(3, 16\) must have",
        ),
        ((4, 8), (4, 8), None, ConfigError, "ends at 16 but the embedding has 8 dims"),
        ((4, 16), (4, 16, 1), None, InputError, r"positives must be a 2-D \[N, d\] tensor"),
        (
            (1, 16),
            (1, 16),
            None,
            InputError,
            "a batch of 1 pair without hard negatives has no in-batch negative",
        ),
        (
            (4, 16),
            (4, 16),
            (3, 16),
            InputError,
            r"negatives \(3, 16\) must be \[N, d\] or "
            r"\[N, H, d\] with N = 4",
        ),
        ((4, 16), (4, 16), (4, 2, 8), InputError, "with N = 4 queries, H >= 1 and d = 16"),
        ((4, 16), (4, 16), (4, 0, 16), InputError, "H >= 1"),
        ((4, 16), (4, 16), (4,), InputError, r"negatives must be a tensor \[N, d\] or"),
    ],
)
def test_bad_inputs_are_named(q, p, neg, error, match):
    loss_fn = MatryoshkaContrastiveLoss(NESTING)
    neg = None if neg is None else torch.randn(*neg)
    with pytest.raises(error, match=match):
        loss_fn(torch.randn(*q), torch.randn(*p), neg)


def test_batch_of_one_with_hard_negatives_is_allowed():
    loss = MatryoshkaContrastiveLoss(NESTING)(
        torch.randn(1, 16), torch.randn(1, 16), torch.randn(1, 16)
    )
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (torch.randn(3, 16).tolist(), torch.randn(3, 16), "a must be a torch tensor"),
        (torch.randint(0, 3, (3, 16)), torch.randn(3, 16), "a must be floating point"),
        (
            torch.randn(3, 16),
            torch.randn(3, 16, dtype=torch.float64),
            "must share dtype and device",
        ),
    ],
)
def test_bad_similarity_inputs_are_named(a, b, match):
    with pytest.raises(InputError, match=match):
        prefix_similarities(a, b, NESTING)


def test_state_dict_resumes_the_size_draws():
    loss_fn = MatryoshkaContrastiveLoss(NESTING, n_dims_per_step=2, seed=3)
    for _ in range(3):
        loss_fn.draw_sizes()
    state = loss_fn.state_dict()
    expected = [loss_fn.draw_sizes() for _ in range(4)]
    resumed = MatryoshkaContrastiveLoss(NESTING, n_dims_per_step=2, seed=3)
    resumed.load_state_dict(state)
    for want in expected:
        assert torch.equal(resumed.draw_sizes(), want)


def test_benchmark_runs_once_and_restores_threads(tmp_path, capsys):
    bench = load_benchmark("contrastive_fused")
    threads = torch.get_num_threads()
    out = tmp_path / "fused.json"
    bench.main(["--repeats", "1", "--threads", "1", "--out", str(out)])
    assert torch.get_num_threads() == threads
    report = json.loads(out.read_text())
    assert [(r["batch"], r["embed_dim"]) for r in report["rows"]] == bench.SETTINGS
    assert all(r["loss_fused"] > 0 and r["sim_per_size"] > 0 for r in report["rows"])
    assert "loss fused ms" in capsys.readouterr().out
