"""Training: typed config, the (DDP-capable) loop, exact-resume checkpoints, the run folder."""

from mrl.training.checkpoint import CheckpointError, load_checkpoint, load_model
from mrl.training.config import RUN_ONLY_KEYS, TrainConfig, load_config
from mrl.training.loop import TrainResult, train
from mrl.training.monitor import NonFiniteLossError
from mrl.training.predict import RunLogits, run_logits
from mrl.training.rundir import RunExistsError

__all__ = [
    "RUN_ONLY_KEYS",
    "CheckpointError",
    "NonFiniteLossError",
    "RunExistsError",
    "RunLogits",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "load_config",
    "load_model",
    "run_logits",
    "train",
]
