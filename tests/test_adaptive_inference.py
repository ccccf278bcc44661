import numpy as np
import pytest
import torch

from mrl.adaptive import AdaptiveClassifier, Cascade, max_confidence
from mrl.errors import ConfigError, NotFittedError
from mrl.models.model import create_model
from mrl.nesting import Nesting

NESTING = Nesting((4, 8, 16, 32))


class CountingHead(torch.nn.Module):
    """Wraps a head and counts forward_size calls and the rows they see."""

    def __init__(self, head):
        super().__init__()
        self.head = head
        self.calls, self.rows = [], 0

    @property
    def dims(self):
        return self.head.dims

    def forward(self, z):
        return self.head(z)

    def forward_size(self, z, index):
        self.calls.append(index)
        self.rows += z.shape[0]
        return self.head.forward_size(z, index)


def fitted(head_kind, seed=0):
    torch.manual_seed(seed)
    model = create_model("mlp", (1, 6, 6), NESTING, num_classes=5, head=head_kind).eval()
    x_hold, x_test = torch.randn(400, 1, 6, 6), torch.randn(300, 1, 6, 6)
    with torch.no_grad():
        logits_hold = model(x_hold).numpy()
    # labels from the largest size so the larger sizes are "more right", as after training
    labels = logits_hold[-1].argmax(axis=1)
    cascade = Cascade(NESTING, policy="joint", target_dim=32, tolerance=0.05)
    return model, cascade.fit(logits_hold, labels), x_test


@pytest.mark.parametrize("head_kind", ["mrl", "mrl-e"])
def test_early_exit_matches_full_evaluation_with_fewer_heads(head_kind):
    model, cascade, x = fitted(head_kind)
    with torch.no_grad():
        full = model(x).numpy()  # every head on every row: G x N head rows
    model.head = CountingHead(model.head)
    out = AdaptiveClassifier(model, cascade).predict(x)
    np.testing.assert_array_equal(out.predictions.numpy(), cascade.predict(full))
    np.testing.assert_array_equal(out.exit_index.numpy(), cascade.exit_index(full))
    conf, _ = max_confidence(full, NESTING)
    exits = out.exit_index.numpy()
    np.testing.assert_allclose(out.confidence.numpy(), conf[exits, np.arange(len(x))])
    exits = out.exit_index.numpy()
    # size j's head sees exactly the rows that did not stop before j
    expected_rows = sum(int((exits >= j).sum()) for j in range(len(NESTING)))
    assert model.head.rows == expected_rows < len(NESTING) * len(x)
    assert (exits == 0).any() and (exits > 0).any()


def test_all_rows_stopping_early_skip_the_larger_heads():
    model, cascade, x = fitted("mrl")
    cascade.thresholds_ = np.zeros_like(cascade.thresholds_)  # everybody stops at size 4
    model.head = CountingHead(model.head)
    out = AdaptiveClassifier(model, cascade).predict(x)
    assert model.head.calls == [0] and (out.exit_index == 0).all()


def test_cascade_for_another_nesting_is_refused():
    model, cascade, _ = fitted("mrl")
    other = create_model("mlp", (1, 6, 6), Nesting((8, 16, 32)), num_classes=5)
    with pytest.raises(ConfigError, match=r"fitted for sizes \[4, 8, 16, 32\] but the model"):
        AdaptiveClassifier(other, cascade)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        AdaptiveClassifier(model, Cascade(NESTING))
    with pytest.raises(ConfigError, match="cascade must be a fitted Cascade, got str"):
        AdaptiveClassifier(model, "thresholds.json")
    with pytest.raises(ConfigError, match="model must be a MatryoshkaModel, got Linear"):
        AdaptiveClassifier(torch.nn.Linear(2, 2), cascade)
