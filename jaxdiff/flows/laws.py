r"""The laws flows are trained between, as traceable samplers ``sample(key, n) -> [n, *data]``.

2-D laws follow torchcfm's benchmark conventions (so published W2 figures are comparable):

* ``gaussian``       ``N(0, I)``
* ``8gaussians``     8 centres on the circle of radius 5 (angles kπ/4), each ``N(c_k, √0.1 · I)``
                     (torchcfm's ``eight_normal_sample(scale=5, var=0.1)`` passes ``√var`` as the covariance)
* ``moons``          scikit-learn's two moons with noise 0.2, mapped ``x ↦ 3x − 1``
* ``ring``           8 Gaussians on the circle of radius 2, std 0.25 (the project's toy ring)
* ``checkerboard``   uniform on the 8 black cells of a 4 × 4 board on ``[−2, 2]²``

Image domains (for translation) are pools of scikit-learn's digits scaled to ``[−1, 1]`` (``[n, 8, 8, 1]``):
``digits``, ``digits_inverted`` (``−x``), ``digits_rotated`` (90°); :func:`paired_digits` gives rows that
correspond (the same digit in both domains), for I²SB-style paired training.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

TWO_D_LAWS = ("gaussian", "8gaussians", "moons", "ring", "checkerboard")
IMAGE_LAWS = ("digits", "digits_inverted", "digits_rotated")
LAWS = TWO_D_LAWS + IMAGE_LAWS


def sample_gaussian(key: Array, n: int) -> Array:
    """``N(0, I₂)``: ``[n, 2]``."""
    return jax.random.normal(key, (n, 2))


def sample_8gaussians(key: Array, n: int) -> Array:
    """torchcfm's 8 Gaussians: centres ``5 (cos kπ/4, sin kπ/4)``, covariance ``√0.1 I``: ``[n, 2]``."""
    k_comp, k_noise = jax.random.split(key)
    angle = jax.random.randint(k_comp, (n,), 0, 8) * (jnp.pi / 4)
    centres = 5.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
    return centres + 0.1**0.25 * jax.random.normal(k_noise, (n, 2))


def sample_moons(key: Array, n: int) -> Array:
    """Two moons (outer ``(cos θ, sin θ)``, inner ``(1 − cos θ, ½ − sin θ)``, ``θ ~ U[0, π]``) plus
    ``N(0, 0.2² I)``, mapped ``x ↦ 3x − 1`` (torchcfm): ``[n, 2]``."""
    k_side, k_angle, k_noise = jax.random.split(key, 3)
    theta = jax.random.uniform(k_angle, (n,), minval=0.0, maxval=jnp.pi)
    outer = jnp.stack([jnp.cos(theta), jnp.sin(theta)], -1)
    inner = jnp.stack([1.0 - jnp.cos(theta), 0.5 - jnp.sin(theta)], -1)
    pts = jnp.where((jax.random.uniform(k_side, (n,)) < 0.5)[:, None], outer, inner)
    return 3.0 * (pts + 0.2 * jax.random.normal(k_noise, (n, 2))) - 1.0


def sample_ring(key: Array, n: int) -> Array:
    """8 Gaussians of std 0.25 on the circle of radius 2: ``[n, 2]``."""
    k_comp, k_noise = jax.random.split(key)
    angle = jax.random.randint(k_comp, (n,), 0, 8) * (jnp.pi / 4)
    return 2.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1) + 0.25 * jax.random.normal(k_noise, (n, 2))


def sample_checkerboard(key: Array, n: int) -> Array:
    """Uniform on the black cells ``(i + j)`` even of the 4 × 4 board on ``[−2, 2]²``: ``[n, 2]``."""
    k_cell, k_pos = jax.random.split(key)
    cell = jax.random.randint(k_cell, (n,), 0, 8)
    row = cell // 2
    col = 2 * (cell % 2) + (row % 2)
    corner = jnp.stack([col, row], -1).astype(jnp.float32) - 2.0
    return corner + jax.random.uniform(k_pos, (n, 2))


_TWO_D = {"gaussian": sample_gaussian, "8gaussians": sample_8gaussians, "moons": sample_moons, "ring": sample_ring,
          "checkerboard": sample_checkerboard}


def digit_images(domain: str = "digits", indices: np.ndarray | None = None) -> np.ndarray:
    """scikit-learn's digits in ``[−1, 1]``, ``[n, 8, 8, 1]`` float32, in one of :data:`IMAGE_LAWS`."""
    if domain not in IMAGE_LAWS:
        raise ValueError(f"domain must be one of {IMAGE_LAWS}, got domain={domain!r}.")
    # read here, not through jaxdiff.training.data: the job's data layer imports this module
    from sklearn.datasets import load_digits

    x = load_digits().images.astype(np.float32)[..., None] / 8.0 - 1.0
    if indices is not None:
        x = x[indices]
    if domain == "digits_inverted":
        x = -x
    elif domain == "digits_rotated":
        x = np.rot90(x, k=1, axes=(1, 2)).copy()
    return x


def pool_law(pool: np.ndarray) -> Callable[[Array, int], Array]:
    """``sample(key, n)``: rows of a fixed array drawn uniformly with replacement."""
    pool = jnp.asarray(pool)

    def sample(key: Array, n: int) -> Array:
        return pool[jax.random.randint(key, (n,), 0, pool.shape[0])]

    return sample


def paired_digits(source: str, target: str, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The same digit images in two domains, row for row (paired translation data)."""
    return digit_images(source, indices), digit_images(target, indices)


def get_law(name: str, *, indices: np.ndarray | None = None) -> Callable[[Array, int], Array]:
    """The sampler of a named law (image laws draw from the digit pool, optionally restricted to ``indices``)."""
    if name in _TWO_D:
        return _TWO_D[name]
    if name in IMAGE_LAWS:
        return pool_law(digit_images(name, indices))
    raise ValueError(f"unknown law {name!r}; the laws are {LAWS}.")
