"""Training: the train state, the optimizer, EMA, a data-parallel train step, checkpoints, data,
configs, and the main job (``train``, ``load_run``, ``evaluate_run``)."""

from jaxdiff.training.checkpoint import Checkpointer
from jaxdiff.training.config import ConfigError, default_config, validate_config
from jaxdiff.training.data import Dataset, load_dataset, make_stream
from jaxdiff.training.run import (
    IncompatibleWorkdirError,
    NonFiniteLossError,
    Run,
    evaluate_run,
    load_run,
    train,
)
from jaxdiff.training.step import TrainState, create_train_state, make_optimizer, make_train_step

__all__ = [
    "Checkpointer",
    "ConfigError",
    "Dataset",
    "IncompatibleWorkdirError",
    "NonFiniteLossError",
    "Run",
    "TrainState",
    "create_train_state",
    "default_config",
    "evaluate_run",
    "load_run",
    "load_dataset",
    "make_optimizer",
    "make_stream",
    "make_train_step",
    "train",
    "validate_config",
]
