"""Class-conditional CIFAR-10 with classifier-free guidance: score_sde's DDPM++ continuous VP config
(``vp_cifar.py``) with EDM's class-conditional CIFAR-10 settings where they apply to score_sde's network.

From EDM (Karras et al. 2022, the conditional CIFAR-10 run ``--cond=1 --arch=ddpmpp``): a class embedding added
to the noise embedding (here: ``model.num_classes = 10``, a learned table with a null row), dropout 0.13.
For guidance: label dropout 0.1 per example (EDM trains no unconditional branch; Ho & Salimans' CFG needs one).
Kept from score_sde: the VP SDE, DSM loss and weighting, Adam at 2e-4 with batch 128, EMA 0.9999, flips.
Not applicable: EDM's preconditioning and noise distribution (a different objective), its non-leaking
augmentation (not in jaxdiff), batch 512 / lr 1e-3 (score_sde's optimizer is kept so runs compare with
``vp_cifar.py``). Point data.path at the CIFAR-10 python archive.
"""

from experiments.configs import vp_cifar
from experiments.configs._conditional import make_conditional


def get_config():
    config = make_conditional(vp_cifar.get_config(), eval_guidance=(0.0, 1.0))
    config.model.dropout = 0.13
    return config
