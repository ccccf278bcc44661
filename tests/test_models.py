import pytest
import torch
from torch import nn

from mrl.errors import ConfigError, InputError
from mrl.models import BACKBONES, create_model
from mrl.nesting import Nesting


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_shapes_and_gradients(name):
    torch.manual_seed(0)
    in_shape = (1, 28, 28) if name != "mlp" else (1, 8, 8)
    embed = 64
    model = create_model(name, in_shape, Nesting.halving(embed, min_dim=8), num_classes=10)
    out = model(torch.randn(2, *in_shape))
    assert out.shape == (4, 2, 10)
    assert torch.isfinite(out).all()
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname


def test_user_backbone_and_dim_check():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 16))
    model = create_model(backbone, (12,), Nesting((4, 8, 16)), num_classes=3, head="mrl-e")
    assert model(torch.randn(5, 12)).shape == (3, 5, 3)
    bad = create_model(nn.Linear(12, 10), (12,), Nesting((4, 8, 16)), num_classes=3)
    with pytest.raises(ValueError, match=r"backbone returned shape \(5, 10\), expected \[N, 16\]"):
        bad(torch.randn(5, 12))


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'; choose one of mlp, cnn"):
        create_model("vgg", (1, 8, 8), Nesting((4, 8)), 10)


@pytest.mark.parametrize(
    "backbone, in_shape, error, match",
    [
        ("vgg", (1, 8, 8), ConfigError, "unknown backbone 'vgg'; choose one of mlp, cnn"),
        ("cnn", (64,), InputError, r"inputs shaped \(C, H, W\), got \(64,\); use backbone=mlp"),
        ("resnet18", (8, 8), InputError, r"inputs shaped \(C, H, W\), got \(8, 8\)"),
    ],
)
def test_backbone_that_cannot_read_the_inputs_is_named(backbone, in_shape, error, match):
    with pytest.raises(error, match=match):
        create_model(backbone, in_shape, Nesting((4, 8)), 10)
