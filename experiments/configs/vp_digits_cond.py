"""Class-conditional digits (the main job's VP-SDE and U-Net, ``vp_digits.py``) with classifier-free guidance:
the U-Net embeds the label (10 classes + the null class) into its time embedding, and each training example's
label is dropped to the null class with probability 0.1, so one network gives both branches of
``(1 + w)·ε(x, t | c) − w·ε(x, t)``. Sample grids show one row per digit at ``sampling.guidance``; eval.json
adds class accuracy and FD_digits at the weights of ``eval.guidance``."""

from experiments.configs import vp_digits


def get_config():
    config = vp_digits.get_config()
    config.model.num_classes = 10
    config.training.label_dropout = 0.1
    config.sampling.guidance = 1.0
    config.eval.guidance = (0.0, 1.0, 3.0)
    return config
