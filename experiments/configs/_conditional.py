"""Class-conditional training with classifier-free guidance on top of an unconditional config."""


def make_conditional(config, *, num_classes: int = 10, label_dropout: float = 0.1, grid_guidance: float = 1.0,
                     eval_guidance: tuple = (0.0, 1.0, 3.0)):
    """``config`` with a label embedding of ``num_classes`` classes (+ the null class), per-example label dropout,
    the sample grids' guidance weight and the weights eval.json reports."""
    config.model.num_classes = num_classes
    config.training.label_dropout = label_dropout
    config.sampling.guidance = grid_guidance
    config.eval.guidance = tuple(eval_guidance)
    return config
