"""Turn a score_sde checkpoint into a jaxdiff workdir: ``python -m experiments.import_checkpoint
--config=experiments/configs/vp_cifar.py --checkpoint=checkpoint_26.pth --workdir=outputs/vp_cifar_imported``.

Reads score_sde_pytorch's ``checkpoint_<n>.pth`` (``{"model", "ema", "optimizer", "step"}``; no PyTorch needed) or
score_sde's JAX ``checkpoint_<n>`` (flax msgpack), for the network the config describes (``vp_cifar.py`` = DDPM++
cont. (VP), ``subvp_cifar.py``, ``ve_cifar.py`` = NCSN++ cont. (VE), the ``*_deep.py`` ones, ``vp_ddpm_cifar.py``),
and writes ``config.json`` and ``checkpoints/<step>`` with the EMA weights as the run's EMA parameters (what
sampling and evaluation use) and the raw weights as its training parameters. Then ``experiments.sample`` and
``experiments.evaluate`` work on the workdir as on any run, and ``experiments.train`` resumes training from it
(Adam's moments start afresh; the data stream starts from its beginning). An existing run is never overwritten.
"""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

_DEFAULT = os.path.join(os.path.dirname(__file__), "configs", "vp_cifar.py")
if __name__ == "__main__":
    from experiments._cli import check_config_args

    check_config_args(sys.argv, _DEFAULT)
config_flags.DEFINE_config_file("config", _DEFAULT, "The score_sde-style config of the checkpoint's network.",
                                lock_config=True)
flags.DEFINE_string("checkpoint", None, "score_sde checkpoint: PyTorch checkpoint_<n>.pth or JAX checkpoint_<n>.",
                    required=True)
flags.DEFINE_string("workdir", None, "New run folder to write.", required=True)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import jax
    import numpy as np
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from experiments._cli import fail
    from jaxdiff.models.score_sde_import import CheckpointImportError, load_score_sde_params, score_sde_config
    from jaxdiff.training import config as C
    from jaxdiff.training.checkpoint import Checkpointer
    from jaxdiff.training.run import _write_json, check_workdir_path
    from jaxdiff.training.step import create_train_state

    workdir = FLAGS.workdir
    if os.path.exists(os.path.join(workdir, "checkpoints")) or os.path.exists(os.path.join(workdir, "config.json")):
        fail(f"--workdir={workdir!r} already holds a run; give a new folder (nothing was changed).")
    try:
        config = score_sde_config(FLAGS.config)
        C.validate_config(config)
        check_workdir_path(workdir)
        ema_params, info = load_score_sde_params(FLAGS.checkpoint, config, ema=True)
        raw_params, _ = load_score_sde_params(FLAGS.checkpoint, config, ema=False)
    except FileNotFoundError as err:
        fail(f"--checkpoint={FLAGS.checkpoint!r}: {err}")
    except (C.ConfigError, CheckpointImportError) as err:
        fail(str(err))
    step = int(info["step"] or 0)
    optimizer = C.build_optimizer(config)
    key = jax.random.key(config.seed)
    state = create_train_state(jax.tree_util.tree_map(jax.numpy.asarray, raw_params), optimizer,
                               jax.random.split(key, 3)[1])
    state = state.replace(step=jax.numpy.asarray(step, jax.numpy.int32),
                          ema_params=jax.tree_util.tree_map(jax.numpy.asarray, ema_params))
    os.makedirs(workdir, exist_ok=True)
    _write_json(os.path.join(workdir, "config.json"), config.to_dict())
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.training.max_to_keep)
    try:
        ckpt.save(step, state, {"step": step, "imported_from": os.path.abspath(FLAGS.checkpoint),
                                "format": info["format"]})
        ckpt.wait()
    finally:
        ckpt.close()
    n = sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(ema_params))
    print(f"imported {FLAGS.checkpoint} ({info['format']} format, step {step}, {n:,} parameters) into {workdir}")


if __name__ == "__main__":
    from experiments._cli import run

    run(main, config_default=_DEFAULT)
