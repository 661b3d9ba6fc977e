"""Training: the train state, the optimizer, EMA and a data-parallel train step."""

from jaxdiff.training.checkpoint import Checkpointer
from jaxdiff.training.step import TrainState, create_train_state, make_optimizer, make_train_step

__all__ = ["Checkpointer", "TrainState", "create_train_state", "make_optimizer", "make_train_step"]
