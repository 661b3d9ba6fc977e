"""Reference statistics for FID / KID: ``python -m experiments.fid_stats --config=experiments/configs/vp_cifar.py
--config.data.path=cifar-10-python.tar.gz --inception=pt_inception-2015-12-05-6726825d.pth --out=cifar10_stats.npz``.

Computes pytorch-fid's Inception pool3 features of the config's dataset (the training split by default, as
score_sde's ``cifar10_stats.npz``; ``--split=test`` for the held-out one) and writes ``mu`` and ``sigma``
(float64, pytorch-fid's ``--save-stats`` layout), ``pool_3`` (float32 activations, for KID; ``--noactivations``
leaves them out) and ``num_images``. Point ``eval.fid_stats`` (or ``experiments.evaluate --fid_stats``) at the file.
Digit images (8 × 8, 17 levels) are rescaled to 0..255 and repeated to RGB, as the evaluation does with samples.
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
config_flags.DEFINE_config_file("config", _DEFAULT, "Config file naming the dataset (data.*).", lock_config=True)
flags.DEFINE_string("inception", None, "pytorch-fid's Inception weights (.pth state dict, or its .npz).", required=True)
flags.DEFINE_string("out", None, "Output .npz path.", required=True)
flags.DEFINE_enum("split", "train", ["train", "test"], "Which split's images.")
flags.DEFINE_integer("num", 0, "Use the first NUM images of the split (0: all).")
flags.DEFINE_enum("mode", "pytorch_fid", ["pytorch_fid", "tf_legacy"], "Inception input pipeline.")
flags.DEFINE_integer("batch_size", 100, "Images per compiled batch.")
flags.DEFINE_boolean("activations", True, "Also save the pool3 activations (needed for KID).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import time

    import numpy as np
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from experiments._cli import fail
    from jaxdiff import inception
    from jaxdiff.metrics import feature_statistics, inception_features
    from jaxdiff.training.config import ConfigError, validate_config
    from jaxdiff.training.data import POINT_DATASETS, DataError, load_dataset
    from jaxdiff.training.run import images_uint8_rgb

    config = FLAGS.config
    if FLAGS.num < 0:
        fail(f"--num must be ≥ 0, got {FLAGS.num}.")
    if FLAGS.batch_size < 1:
        fail(f"--batch_size must be ≥ 1, got {FLAGS.batch_size}.")
    out_dir = os.path.dirname(os.path.abspath(FLAGS.out))
    if not os.path.isdir(out_dir):
        fail(f"--out={FLAGS.out!r}: the folder {out_dir!r} does not exist.")
    if os.path.isdir(FLAGS.out):
        fail(f"--out={FLAGS.out!r} is a folder; give a file path ending in .npz.")
    try:
        validate_config(config)
        if config.data.dataset in POINT_DATASETS:
            fail(f"data.dataset={config.data.dataset!r} is not an image dataset; FID statistics need images.")
        inception.load_params(FLAGS.inception)  # every key and shape checked before the dataset is read
        dataset = load_dataset(config.data)
    except FileNotFoundError as err:
        fail(f"--inception={FLAGS.inception!r}: {err}" if FLAGS.inception in str(err) else str(err))
    except (ConfigError, DataError) as err:
        fail(str(err))
    except ValueError as err:
        fail(f"--inception={FLAGS.inception!r}: {err}")
    images = dataset.train if FLAGS.split == "train" else dataset.test
    if FLAGS.num:
        images = images[: FLAGS.num]
    if len(images) < 2:
        fail(f"the {FLAGS.split} split has {len(images)} images; statistics need at least 2.")
    t0 = time.time()
    features = inception_features(images_uint8_rgb(dataset, images), FLAGS.inception, mode=FLAGS.mode,
                                  batch_size=FLAGS.batch_size)
    mu, sigma = feature_statistics(features)
    arrays = {"mu": mu, "sigma": sigma, "num_images": np.array(len(images))}
    if FLAGS.activations:
        arrays["pool_3"] = features.astype(np.float32)
    tmp = FLAGS.out + ".partial.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, FLAGS.out if FLAGS.out.endswith(".npz") else FLAGS.out)
    print(f"wrote {FLAGS.out}: {len(images)} {dataset.name} {FLAGS.split} images ({FLAGS.mode}), "
          f"{time.time() - t0:.1f} s")


if __name__ == "__main__":
    from experiments._cli import run

    run(main, config_default=_DEFAULT)
