import pytest
import torch

from mrl.errors import ConfigError, InputError
from mrl.nesting import Nesting
from mrl.nn.heads import FixedFeatureHead, MRLEHead, MRLHead, create_head

NESTING = Nesting((4, 8, 16))


def test_mrl_e_logits_equal_sliced_shared_weight():
    torch.manual_seed(0)
    head = MRLEHead(NESTING, num_classes=5)
    z = torch.randn(7, 16)
    logits = head(z)
    assert logits.shape == (3, 7, 5)
    for g, m in enumerate(NESTING):
        expected = z[:, :m] @ head.weight[:, :m].T + head.bias
        torch.testing.assert_close(logits[g], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(head.forward_size(z, g), expected, rtol=1e-5, atol=1e-5)


def test_mrl_e_has_no_extra_parameters():
    head = MRLEHead(NESTING, num_classes=5)
    assert sum(p.numel() for p in head.parameters()) == 5 * 16 + 5


def test_mrl_head_gradient_reaches_only_read_dims():
    torch.manual_seed(0)
    head = MRLHead(NESTING, num_classes=5)
    for g, m in enumerate(NESTING):
        z = torch.randn(3, 16, requires_grad=True)
        head(z)[g].sum().backward()
        assert torch.all(z.grad[:, m:] == 0)
        assert torch.any(z.grad[:, :m] != 0)
        head.zero_grad()


def test_mrl_head_separate_classifier_per_size():
    head = MRLHead(NESTING, num_classes=5)
    assert [c.in_features for c in head.classifiers] == [4, 8, 16]
    z = torch.randn(2, 16)
    for g, m in enumerate(NESTING):
        clf = head.classifiers[g]
        torch.testing.assert_close(head(z)[g], z[:, :m] @ clf.weight.T + clf.bias)
        torch.testing.assert_close(head(z)[g], head.forward_size(z, g))


@pytest.mark.parametrize("path", ["forward_per_size", "forward_batched"])
def test_mrl_head_paths_equal_an_independent_reference(path):
    """Both forward paths (CPU per-size, accelerator baddbmm) give the logits and gradients
    of a hand-written per-size matmul, computed without the head's own code."""
    torch.manual_seed(0)
    head = MRLHead(NESTING, num_classes=5)
    z = torch.randn(6, 16)
    weights = torch.randn(3, 6, 5)

    def logits_and_grads(forward):
        zz = z.clone().requires_grad_(True)
        out = forward(zz)
        (out * weights).sum().backward()
        grads = [zz.grad] + [p.grad.clone() for p in head.parameters()]
        head.zero_grad(set_to_none=True)
        return out.detach(), grads

    def reference(zz):
        clf = head.classifiers
        return torch.stack(
            [zz[:, :m] @ clf[g].weight.T + clf[g].bias for g, m in enumerate(NESTING)]
        )

    ref_out, ref_grads = logits_and_grads(reference)
    out, grads = logits_and_grads(getattr(head, path))
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(ref_grads) == 1 + 2 * len(NESTING)
    for fast, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)


def test_ff_head_reads_first_k():
    head = FixedFeatureHead(16, ff_dim=4, num_classes=3)
    z = torch.randn(2, 16)
    out = head(z)
    assert out.shape == (1, 2, 3)
    z2 = z.clone()
    z2[:, 4:] = 100.0
    torch.testing.assert_close(head(z2), out)


@pytest.mark.parametrize("kind", ["mrl", "mrl-e", "ff"])
def test_every_parameter_gets_a_gradient(kind):
    head = create_head(kind, NESTING, 5, ff_dim=8)
    head(torch.randn(4, 16)).sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: create_head("foo", NESTING, 5), "unknown head 'foo'; choose one of mrl"),
        (lambda: MRLHead(NESTING, 0), "num_classes must be >= 1, got 0"),
        (lambda: MRLEHead(NESTING, 2.5), r"num_classes must be an int, got 2.5 \(float\)"),
        (lambda: FixedFeatureHead(16, ff_dim=32, num_classes=5), "ff_dim must be in 1..16, got 32"),
        (lambda: FixedFeatureHead(16, ff_dim=0, num_classes=5), "ff_dim must be in 1..16, got 0"),
        (lambda: create_head("ff", NESTING, 5, ff_dim=0), "ff_dim must be in 1..16, got 0"),
        (lambda: FixedFeatureHead(16, ff_dim="4", num_classes=5), "ff_dim must be an int"),
    ],
)
def test_bad_head_parameters_are_named(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


@pytest.mark.parametrize("kind", ["mrl", "mrl-e", "ff"])
def test_features_of_the_wrong_width_are_named(kind):
    with pytest.raises(InputError, match=r"head expects features of shape \[N, 16\], got \(2, 8\)"):
        create_head(kind, NESTING, 5, ff_dim=8)(torch.randn(2, 8))
