"""Toy 2-D 'ring' with the MLP and the VP SDE (see toy.py)."""

from experiments.configs import toy


def get_config():
    return toy.get_config("ring")
