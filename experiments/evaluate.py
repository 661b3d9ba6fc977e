"""Evaluate a finished run again: ``python -m experiments.evaluate --workdir=DIR`` rewrites
``DIR/eval.json`` (held-out bits/dim through the PF-ODE, and the sample-quality figure) and prints it.
``--config.eval.*``-style overrides: ``--num_samples``, ``--bpd_num_examples``."""

from __future__ import annotations

import json

from absl import flags

flags.DEFINE_string("workdir", None, "A run folder written by experiments.train.", required=True)
flags.DEFINE_integer("num_samples", None, "Override eval.num_samples.")
flags.DEFINE_integer("bpd_num_examples", None, "Override eval.bpd_num_examples (0: all held-out).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from experiments._cli import fail
    from jaxdiff.training.config import ConfigError
    from jaxdiff.training.run import evaluate_run, load_run

    try:
        run = load_run(FLAGS.workdir)
    except (FileNotFoundError, ConfigError) as err:
        fail(str(err))
    if FLAGS.num_samples is not None:
        run.config.eval.num_samples = FLAGS.num_samples
    if FLAGS.bpd_num_examples is not None:
        run.config.eval.bpd_num_examples = FLAGS.bpd_num_examples
    print(json.dumps(evaluate_run(run), indent=2, sort_keys=True))


if __name__ == "__main__":
    from experiments._cli import run

    run(main)
