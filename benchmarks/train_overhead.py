"""What does the Matryoshka head + loss cost per training step, compared with plain CE?

For each model (the CPU default: the demo's small CNN, d=64, nesting {4..64}, 28x28
inputs; and ResNet-50, d=2048, nesting {8..2048}, 1000 classes) and each variant
- ce:    one full-dim nn.Linear(d, C) + nn.CrossEntropyLoss (the baseline),
- mrl:   MRLHead (a classifier per size) + MatryoshkaLoss,
- mrl-e: MRLEHead (one shared W) + MatryoshkaLoss,
- ff:    FixedFeatureHead at k = d through MatryoshkaLoss (our code path with one size),
it times full training steps (forward, loss, backward, SGD step) through the training
loop's own `forward_loss` / `optimizer_step`, and the head + loss alone (forward and
backward on fixed features). Variants run round-robin within each repeat so background
load hits them alike; the table reports medians. On a shared CPU the step-level "vs CE"
difference is within run-to-run noise (a few %); the head + loss column measures the
Matryoshka part directly.

    python benchmarks/train_overhead.py                    # CUDA if available, else CPU
    python benchmarks/train_overhead.py --models cnn --repeats 9

Goal (issue 2): MRL head + loss <= 10% of a step on the CPU default, <= 5% on ResNet-50.
On the CPU, ResNet-50 runs at a small batch and resolution (say so in any report).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mrl.models import MatryoshkaModel, create_backbone
from mrl.nesting import Nesting
from mrl.nn import MatryoshkaLoss, create_head
from mrl.training.config import TrainConfig
from mrl.training.loop import forward_loss
from mrl.training.optim import build_optimizer, optimizer_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script  # noqa: E402  (the benchmarks' harness)

VARIANTS = ("ce", "mrl", "mrl-e", "ff")


@dataclass(frozen=True)
class Setting:
    """One model to time: backbone, input shape, nesting, classes and batch size."""

    name: str
    backbone: str
    in_shape: tuple[int, ...]
    nesting: Nesting
    num_classes: int
    batch: int


class PlainCE(nn.Module):
    """Backbone + one nn.Linear(d, C): the classifier MRL is compared against."""

    def __init__(self, backbone: nn.Module, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x))  # (N, C)


def build(setting: Setting, variant: str) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(model, head, loss_fn) for one variant; `head` is the part after the backbone."""
    torch.manual_seed(0)
    backbone = create_backbone(setting.backbone, setting.in_shape, setting.nesting.embed_dim)
    d, c = setting.nesting.embed_dim, setting.num_classes
    if variant == "ce":
        model = PlainCE(backbone, d, c)
        return model, model.fc, nn.CrossEntropyLoss(label_smoothing=0.1)
    head = create_head(variant, setting.nesting, c, ff_dim=d)
    loss_nesting = setting.nesting if variant != "ff" else Nesting((d,))
    model = MatryoshkaModel(backbone, head, setting.nesting)
    return model, head, MatryoshkaLoss(loss_nesting, label_smoothing=0.1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(fn, steps: int, device: torch.device) -> float:
    """Seconds per call of `fn`, averaged over `steps` calls."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / steps


def run_setting(
    setting: Setting, device: torch.device, repeats: int, steps: int, warmup: int
) -> list[dict]:
    autocast = torch.bfloat16 if device.type == "cuda" else None
    x = torch.randn(setting.batch, *setting.in_shape, device=device)
    y = torch.randint(0, setting.num_classes, (setting.batch,), device=device)
    z = torch.randn(setting.batch, setting.nesting.embed_dim, device=device, requires_grad=True)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    step_fns, head_fns = {}, {}
    for variant in VARIANTS:
        model, head, loss_fn = build(setting, variant)
        model.to(device).train()
        optimizer = build_optimizer(model, TrainConfig())

        def step(model=model, loss_fn=loss_fn, optimizer=optimizer) -> None:
            optimizer_step(forward_loss(model, loss_fn, x, y, autocast), optimizer, scaler)

        def head_only(head=head, loss_fn=loss_fn) -> None:
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                logits = head(z)
            loss_fn(logits.float(), y).backward()

        step_fns[variant], head_fns[variant] = step, head_only
        for _ in range(warmup):
            step()
            head_only()
    step_s = {v: [] for v in VARIANTS}
    head_s = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for v in VARIANTS:  # round-robin: background load hits every variant alike
            step_s[v].append(time_steps(step_fns[v], steps, device))
            head_s[v].append(time_steps(head_fns[v], steps, device))
    base = statistics.median(step_s["ce"])
    rows = []
    for v in VARIANTS:
        step_ms, head_ms = 1e3 * statistics.median(step_s[v]), 1e3 * statistics.median(head_s[v])
        rows.append(
            {
                "model": setting.name,
                "variant": v,
                "batch": setting.batch,
                "in_shape": list(setting.in_shape),
                "sizes": len(setting.nesting) if v in ("mrl", "mrl-e") else 1,
                "step_ms": step_ms,
                "step_ms_all": [1e3 * s for s in step_s[v]],
                "overhead_vs_ce_pct": 100 * (step_ms / 1e3 - base) / base,
                "head_loss_ms": head_ms,
                "head_loss_pct_of_step": 100 * head_ms / step_ms,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cnn,resnet50", help="comma-separated: cnn, resnet50")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median taken)")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--cnn-batch", type=int, default=128)
    parser.add_argument("--rn50-batch", type=int, help="default: 128 on CUDA, 8 on the CPU")
    parser.add_argument("--rn50-res", type=int, help="default: 224 on CUDA, 128 on the CPU")
    parser.add_argument("--out", default="benchmarks/results/train_overhead.json")
    args = parser.parse_args()

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    cuda = device.type == "cuda"
    rn50_res = args.rn50_res or (224 if cuda else 128)
    settings = {
        "cnn": Setting("cnn", "cnn", (1, 28, 28), Nesting((4, 8, 16, 32, 64)), 10, args.cnn_batch),
        "resnet50": Setting(
            "resnet50",
            "resnet50",
            (3, rn50_res, rn50_res),
            Nesting.halving(2048),
            1000,
            args.rn50_batch or (128 if cuda else 8),
        ),
    }
    if cuda:
        torch.backends.cudnn.benchmark = True
    note = (
        f"{torch.cuda.get_device_name(device)}, bf16 autocast"
        if cuda
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), fp32; "
        "ResNet-50 at a small batch and resolution"
    )
    print(f"device: {note}; median of {args.repeats} repeats x {args.steps} steps")
    rows = []
    for name in args.models.split(","):
        rows += run_setting(settings[name], device, args.repeats, args.steps, args.warmup)

    print(
        f"{'model':>9} {'variant':>7} {'batch':>5} {'sizes':>5} {'step ms':>9} "
        f"{'vs CE':>7} {'head+loss ms':>13} {'% of step':>9}"
    )
    for r in rows:
        print(
            f"{r['model']:>9} {r['variant']:>7} {r['batch']:>5} {r['sizes']:>5} "
            f"{r['step_ms']:>9.2f} {r['overhead_vs_ce_pct']:>+6.1f}% {r['head_loss_ms']:>13.3f} "
            f"{r['head_loss_pct_of_step']:>8.2f}%"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "device": note,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "steps": args.steps,
        "results": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    run_script(main)
