"""Backbones: image or feature batch -> [N, d] representation.

Each entry of `BACKBONES` builds an `nn.Module` whose forward returns [N, embed_dim].
The small CNN and MLP train in minutes on a CPU; ResNets come from torchvision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mrl.errors import ConfigError, InputError


class MLPBackbone(nn.Module):
    """Flatten -> (Linear, BatchNorm, ReLU) x depth -> Linear to embed_dim."""

    def __init__(self, in_features: int, embed_dim: int, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, embed_dim))
        self.net = nn.Sequential(*layers)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, d)


class SmallCNN(nn.Module):
    """Three conv blocks + global average pool + linear to embed_dim; for 28x28-ish images."""

    def __init__(self, in_channels: int, embed_dim: int, width: int = 32) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(in_channels, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.proj = nn.Linear(4 * width, embed_dim)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x))  # (N, d)


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet's pooled features (before `fc`), optionally projected to embed_dim.

    With `embed_dim` equal to the network's feature width (512 for ResNet-18, 2048 for
    ResNet-50) there is no projection, exactly as in the paper. Weights start random:
    nothing is downloaded.
    """

    def __init__(self, arch: str, in_channels: int, embed_dim: int | None = None) -> None:
        super().__init__()
        try:
            import torchvision
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "ResNet backbones need torchvision: pip install 'mrl[vision]' "
                "(on this project's CPU machines: pip install torch==2.14.1 torchvision==0.29.1)"
            ) from e
        net = getattr(torchvision.models, arch)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        width = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.embed_dim = embed_dim or width
        self.proj = nn.Identity() if self.embed_dim == width else nn.Linear(width, self.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(x))  # (N, d)


BackboneFactory = Callable[..., nn.Module]

BACKBONES: dict[str, BackboneFactory] = {
    "mlp": lambda in_shape, embed_dim: MLPBackbone(_numel(in_shape), embed_dim),
    "cnn": lambda in_shape, embed_dim: SmallCNN(_channels(in_shape), embed_dim),
    "resnet18": lambda in_shape, embed_dim: TorchvisionResNet(
        "resnet18", _channels(in_shape), embed_dim
    ),
    "resnet50": lambda in_shape, embed_dim: TorchvisionResNet(
        "resnet50", _channels(in_shape), embed_dim
    ),
}


def _numel(in_shape: tuple[int, ...]) -> int:
    n = 1
    for s in in_shape:
        n *= s
    return n


def _channels(in_shape: tuple[int, ...]) -> int:
    if len(in_shape) != 3:
        raise InputError(
            f"image backbones need inputs shaped (C, H, W), got {in_shape}; use backbone=mlp "
            "for flat features"
        )
    return in_shape[0]


def create_backbone(name: str, in_shape: tuple[int, ...], embed_dim: int) -> nn.Module:
    """Build a registered backbone by name for inputs of shape `in_shape` (without batch)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](tuple(in_shape), embed_dim)
