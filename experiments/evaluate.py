"""Evaluate a finished run again: ``python -m experiments.evaluate --workdir=DIR`` rewrites
``DIR/eval.json`` (held-out bits/dim through the PF-ODE, and the sample-quality figures) and prints it.
``--config.eval.*``-style overrides: ``--num_samples``, ``--bpd_num_examples``; ``--inception_path=PTH
--fid_stats=NPZ`` add FID, Inception Score and KID (pytorch-fid's Inception weights; reference statistics from
``python -m experiments.fid_stats``); ``--data_path`` points the run at its data (a CIFAR-10 archive)."""

from __future__ import annotations

import json

from absl import flags

flags.DEFINE_string("workdir", None, "A run folder written by experiments.train.", required=True)
flags.DEFINE_integer("num_samples", None, "Override eval.num_samples.")
flags.DEFINE_integer("bpd_num_examples", None, "Override eval.bpd_num_examples (0: all held-out).")
flags.DEFINE_string("inception_path", None, "Override eval.inception_path: pytorch-fid's Inception weights (.pth/.npz).")
flags.DEFINE_string("fid_stats", None, "Override eval.fid_stats: reference statistics (.npz with mu/sigma or pool_3).")
flags.DEFINE_boolean("enable_bpd", None, "Override eval.enable_bpd.")
flags.DEFINE_string("data_path", None, "Override data.path (e.g. the CIFAR-10 archive of an imported checkpoint's run).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from experiments._cli import fail
    from jaxdiff.training.config import ConfigError, validate_config
    from jaxdiff.training.run import check_inception_files, evaluate_run, load_run

    try:
        run = load_run(FLAGS.workdir)
    except (FileNotFoundError, ConfigError) as err:
        fail(str(err))
    overrides = {"num_samples": "eval.num_samples", "bpd_num_examples": "eval.bpd_num_examples",
                 "inception_path": "eval.inception_path", "fid_stats": "eval.fid_stats",
                 "enable_bpd": "eval.enable_bpd", "data_path": "data.path"}
    for flag, field in overrides.items():  # each flag given replaces its config field
        if getattr(FLAGS, flag) is not None:
            section, key = field.split(".")
            run.config[section][key] = getattr(FLAGS, flag)
    try:
        validate_config(run.config)
        check_inception_files(run.config)
        run.dataset  # noqa: B018  (read the data now: a missing archive is refused before any work)
    except (OSError, ValueError) as err:
        fail(str(err))
    print(json.dumps(evaluate_run(run), indent=2, sort_keys=True))


if __name__ == "__main__":
    from experiments._cli import run

    run(main)
