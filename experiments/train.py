"""Train any model family (diffusion, flows, interpolants, bridges) through the one job: ``python -m experiments.train
--config=experiments/configs/vp_digits.py --workdir=outputs/digits [--config.training.n_iters=...]``.

Without ``--config`` the embedded default (digits) is used. Class-conditional runs with classifier-free guidance:
``vp_digits_cond.py``, ``fm_digits_cond.py``, ``vp_cifar_cond.py`` (``model.num_classes``). Giving the same ``--workdir`` again resumes
from its newest readable checkpoint (a damaged newer one is reported and renamed aside). Exit status: 0 done,
2 bad config / flag / data / workdir (also: the workdir is in use by another training process), 3 non-finite loss.
"""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

_DEFAULT = os.path.join(os.path.dirname(__file__), "configs", "vp_digits.py")
if __name__ == "__main__":  # ml_collections applies --config.* overrides while defining the flag: check them first
    from experiments._cli import check_config_args

    check_config_args(sys.argv, _DEFAULT)
config_flags.DEFINE_config_file("config", _DEFAULT, "Path to a config file (get_config()).", lock_config=True)
flags.DEFINE_string("workdir", None, "Run folder: checkpoints, metrics.jsonl, samples/, eval.json.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_string("coordinator", None, "jax.distributed coordinator address host:port (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
flags.DEFINE_integer("process_id", None, "This process's id (multi-process runs).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import jax
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO

    if FLAGS.coordinator:
        jax.distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    from jaxdiff.training.config import ConfigError
    from jaxdiff.training.data import DataError
    from jaxdiff.training.lock import WorkdirLockedError
    from jaxdiff.training.run import NonFiniteLossError, train

    config = FLAGS.config
    workdir = FLAGS.workdir or os.path.join("outputs", os.path.splitext(os.path.basename(_config_path()))[0])
    try:
        run = train(config, workdir, progress=FLAGS.progress)
    except (ConfigError, DataError, FileNotFoundError, WorkdirLockedError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    if jax.process_index() == 0:
        print(f"done: step {run.step}; workdir {os.path.abspath(workdir)}")
        eval_path = os.path.join(workdir, "eval.json")
        if os.path.exists(eval_path):
            with open(eval_path) as fh:
                print(fh.read())


def _config_path() -> str:
    for arg in sys.argv[1:]:
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return _DEFAULT


if __name__ == "__main__":
    from experiments._cli import run

    run(main)
