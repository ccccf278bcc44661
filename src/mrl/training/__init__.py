"""Training: typed config, the (DDP-capable) loop, and exact-resume checkpoints."""

from mrl.training.checkpoint import CheckpointError, load_checkpoint, load_model
from mrl.training.config import TrainConfig, load_config
from mrl.training.loop import NonFiniteLossError, TrainResult, train

__all__ = [
    "CheckpointError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "load_config",
    "load_model",
    "train",
]
