"""Class-conditional digits (the main job's VP-SDE and U-Net, ``vp_digits.py``) with classifier-free guidance:
the U-Net embeds the label (10 classes + the null class) into its time embedding, and each training example's
label is dropped to the null class with probability 0.1, so one network gives both branches of
``(1 + w)·ε(x, t | c) − w·ε(x, t)``. Sample grids show one row per digit at ``sampling.guidance``; eval.json
adds class accuracy and FD_digits at the weights of ``eval.guidance``."""

from experiments.configs import vp_digits
from experiments.configs._conditional import make_conditional


def get_config():
    return make_conditional(vp_digits.digits_config())
