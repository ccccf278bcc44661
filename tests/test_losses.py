import pytest
import torch
import torch.nn.functional as F

from mrl.errors import InputError
from mrl.nesting import Nesting
from mrl.nn.losses import MatryoshkaEmbeddingLoss, MatryoshkaLoss


def test_loss_equals_hand_written_weighted_sum():
    torch.manual_seed(0)
    nesting = Nesting((2, 4, 8), (2.0, 1.0, 0.5))
    logits = torch.randn(3, 6, 5)
    target = torch.randint(0, 5, (6,))
    loss = MatryoshkaLoss(nesting, label_smoothing=0.1)(logits, target)
    expected = sum(
        w * F.cross_entropy(logits[g], target, label_smoothing=0.1)
        for g, w in enumerate(nesting.weights)
    )
    torch.testing.assert_close(loss, expected)


def test_custom_base_loss_and_dtype():
    nesting = Nesting((2, 4))
    logits = torch.randn(2, 3, 4, dtype=torch.float64)
    target = torch.tensor([0, 1, 2])
    loss = MatryoshkaLoss(nesting, base_loss=lambda lg, t: lg.mean())(logits, target)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, logits[0].mean() + logits[1].mean())


@pytest.mark.parametrize(
    "target, match",
    [
        (torch.tensor([0.0, 1.0, 2.0]), "labels must be integer class ids"),
        (torch.tensor([True, False, True]), "labels must be integer class ids"),
        (torch.tensor([0, 1, 5]), r"label 5 is out of range for 5 classes \(0..4\)"),
        (torch.tensor([0, -1, 2]), "label -1 is negative; class ids start at 0"),
        (torch.tensor([0, 1]), r"labels must be shaped \[N\] = \[3\] like the logits, got \(2,\)"),
        (torch.tensor([[0, 1, 2]]), r"labels must be shaped \[N\] = \[3\]"),
    ],
)
def test_bad_labels(target, match):
    with pytest.raises(InputError, match=match):
        MatryoshkaLoss(Nesting((2, 4)))(torch.randn(2, 3, 5), target)


def test_wrong_number_of_sizes():
    with pytest.raises(InputError, match="logits have 3 sizes but the loss has 2 weights"):
        MatryoshkaLoss(Nesting((2, 4)))(torch.randn(3, 2, 5), torch.tensor([0, 1]))


def test_embedding_loss_normalizes_each_prefix():
    seen = []

    def base(a, b):
        seen.append((a.shape[1], a.norm(dim=1), b.norm(dim=1)))
        return (a * b).sum()

    nesting = Nesting((4, 8))
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    loss = MatryoshkaEmbeddingLoss(nesting, base, normalize=True)(a, b)
    assert [s[0] for s in seen] == [4, 8]
    for _, na, nb in seen:
        torch.testing.assert_close(na, torch.ones(3))
        torch.testing.assert_close(nb, torch.ones(3))
    expected = sum(
        (F.normalize(a[:, :m], dim=1) * F.normalize(b[:, :m], dim=1)).sum() for m in (4, 8)
    )
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="ends at 8 but the embedding has 6 dims"):
        MatryoshkaEmbeddingLoss(nesting, base)(torch.randn(3, 6))
