"""OT-CFM between two data laws: torchcfm's 8 Gaussians → moons (unpaired translation, exact OT on the global
batch); eval.json: exact W2 of the translated held-out source points to held-out moons."""

from experiments.configs._two_d import base


def get_config():
    config = base("moons_torchcfm", source="8gaussians")
    config.flow.coupling = "exact"
    return config
