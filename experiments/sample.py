"""Draw samples from a finished run: ``python -m experiments.sample --workdir=DIR --num=N --out=FILE.npz``.

Writes ``FILE.npz`` with the array ``samples`` in the data's own units (digit levels 0..16 as uint8,
CIFAR-10 pixels 0..255 as uint8 NHWC, toy coordinates as float32) and ``FILE.png`` (an image grid or a
2-D histogram). The sampler is the run's config's unless ``--sampler``/``--steps``/``--grid`` are given
(``--grid=calibrated`` fits the grid to the run once and saves it in ``WORKDIR/calibrated_grids.json``).

A class-conditional run (``model.num_classes``) draws digit/class ``--class=C`` (default: every class in turn,
one grid row per class) with classifier-free guidance ``--guidance=W`` (``(1 + W)·cond − W·uncond``; default the
run's ``sampling.guidance``); the labels are saved as ``labels`` in the ``.npz``.
"""

from __future__ import annotations

import os

from absl import flags

flags.DEFINE_string("workdir", None, "A run folder written by experiments.train.", required=True)
flags.DEFINE_integer("num", 64, "Number of samples.")
flags.DEFINE_string("out", None, "Output .npz path (default WORKDIR/samples.npz).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("sampler", None, "Override: any name in jaxdiff.samplers().")
flags.DEFINE_integer("steps", None, "Override: number of solver steps.")
flags.DEFINE_string("grid", None, "Override: the time grid, a rule of jaxdiff.time_grid or 'calibrated' (fitted to "
                    "the run for this sampler and steps once, saved in WORKDIR/calibrated_grids.json).")
flags.DEFINE_integer("batch_size", None, "Samples per compiled batch (default eval.batch_size).")
flags.DEFINE_integer("class", None, "Conditional runs: the class to draw (default: all classes, one grid row each).")
flags.DEFINE_float("guidance", None, "Conditional runs: classifier-free guidance weight w (default sampling.guidance).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import jax
    import numpy as np
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from experiments._cli import fail
    from jaxdiff.sampling import samplers
    from jaxdiff.training.config import ConfigError
    from jaxdiff.training.run import load_run, write_sample_grid

    if FLAGS.num < 1:
        fail(f"--num must be ≥ 1, got {FLAGS.num}.")
    if FLAGS.sampler is not None and FLAGS.sampler not in samplers():
        fail(f"--sampler={FLAGS.sampler!r} is not one of {sorted(samplers())}.")

    try:
        run = load_run(FLAGS.workdir)
    except (FileNotFoundError, ConfigError) as err:
        fail(str(err))
    overrides = {}
    label, guidance, classes = FLAGS["class"].value, FLAGS.guidance, run.num_classes
    cols = None
    if (label is not None or guidance is not None) and not classes:
        fail(f"--class/--guidance need a class-conditional run; {FLAGS.workdir!r} is unconditional "
             "(model.num_classes=0).")
    if label is not None and not 0 <= label < classes:
        fail(f"--class={label} is not a class of this run: use 0..{classes - 1}.")
    if guidance is not None and not np.isfinite(guidance):
        fail(f"--guidance must be a finite number, got {guidance}.")
    labels = None
    if classes:
        if label is None:
            per_class = max(1, FLAGS.num // classes)
            labels, cols = np.repeat(np.arange(classes, dtype=np.int32), per_class), per_class
            labels = np.concatenate([labels, np.arange(FLAGS.num - len(labels), dtype=np.int32) % classes])
        else:
            labels = np.full((FLAGS.num,), label, np.int32)
        overrides.update(cond=labels, guidance=guidance)
    if FLAGS.sampler:
        run.config.sampling.sampler = FLAGS.sampler
    if FLAGS.steps:
        overrides["steps"] = FLAGS.steps
    if FLAGS.grid:
        from jaxdiff.sampling._calibrate import CALIBRATABLE
        from jaxdiff.sampling._grid import GRIDS
        from jaxdiff.training.config import sampler_settings

        if FLAGS.grid not in GRIDS + ("calibrated",):
            fail(f"--grid={FLAGS.grid!r} is not one of {list(GRIDS) + ['calibrated']}.")
        name = sampler_settings(run.config)[0]
        if FLAGS.grid == "calibrated" and name not in CALIBRATABLE:
            fail(f"--grid=calibrated needs a deterministic fixed-grid sampler: pass --sampler=one of {list(CALIBRATABLE)} "
                 f"(the run's is {name!r}).")
        overrides["grid"] = FLAGS.grid
    samples = run.sample_data_units(jax.random.key(FLAGS.seed), FLAGS.num, batch_size=FLAGS.batch_size or min(FLAGS.num, run.config.eval.batch_size), **overrides)
    out = FLAGS.out or os.path.join(FLAGS.workdir, "samples.npz")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp.npz"
    np.savez(tmp, samples=samples, **({} if labels is None else {"labels": labels}))
    os.replace(tmp, out)
    png = os.path.splitext(out)[0] + ".png"
    write_sample_grid(png, samples, run.dataset, cols=cols)
    print(f"wrote {out} (samples {samples.shape} {samples.dtype}, step {run.step}) and {png}")


if __name__ == "__main__":
    from experiments._cli import run

    run(main)
