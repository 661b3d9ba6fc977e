"""Class-conditional OT-CFM on digits (``fm_digits.py``: linear path from N(0, I), exact OT on the global batch,
Heun 50 steps) with classifier-free guidance: the labels travel with their target rows through the coupling,
each dropped to the null class with probability 0.1; the guided velocity is ``(1 + w)·v(x, t | c) − w·v(x, t)``."""

from experiments.configs import fm_digits
from experiments.configs._conditional import make_conditional


def get_config():
    return make_conditional(fm_digits.get_config())
