"""Training: the train state, the optimizer, EMA and a data-parallel train step."""

from jaxdiff.training.step import TrainState, create_train_state, make_optimizer, make_train_step

__all__ = ["TrainState", "create_train_state", "make_optimizer", "make_train_step"]
