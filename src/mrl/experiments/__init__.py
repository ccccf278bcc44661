"""Experiment drivers: whole studies that train, evaluate and report (one layer above both)."""

from mrl.experiments.reproduce import ReproduceConfig, load_reproduce_config, reproduce

__all__ = ["ReproduceConfig", "load_reproduce_config", "reproduce"]
