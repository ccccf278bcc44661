import pytest
import torch

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


def test_mrl_head_batched_path_equals_per_size_reference():
    """The accelerator path (one baddbmm) gives the CPU reference's logits and gradients."""
    torch.manual_seed(0)
    head = MRLHead(NESTING, num_classes=5)
    z = torch.randn(6, 16, requires_grad=True)
    weights = torch.randn(3, 6, 5)
    grads = []
    for forward in (head.forward_per_size, head.forward_batched):
        out = forward(z)
        (out * weights).sum().backward()
        grads.append([z.grad.clone()] + [p.grad.clone() for p in head.parameters()])
        z.grad = None
        head.zero_grad()
        torch.testing.assert_close(out, head.forward_per_size(z))
    for ref, fast in zip(*grads, strict=True):
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)


def test_ff_head_reads_first_k():
    head = FixedFeatureHead(16, 4, num_classes=3)
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


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown head 'foo'"):
        create_head("foo", NESTING, 5)
    with pytest.raises(ValueError, match=r"expects features of shape \[N, 16\]"):
        MRLHead(NESTING, 5)(torch.randn(2, 8))
    with pytest.raises(ValueError, match="FF dim 32 must be within 1..16"):
        FixedFeatureHead(16, 32, 5)
