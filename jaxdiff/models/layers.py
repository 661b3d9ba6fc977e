"""Building blocks of the score networks (Flax linen, NHWC).

Initialization follows score_sde: ``default_init(scale)`` is variance scaling with ``fan_avg`` and a
uniform law (a zero scale becomes 1e-10), biases start at zero, and NIN layers default to scale 0.1.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def default_init(scale: float = 1.0) -> Callable:
    """Variance scaling (``fan_avg``, uniform) with ``scale`` (0 → 1e-10, so weights start ≈ 0)."""
    return nn.initializers.variance_scaling(1e-10 if scale == 0 else scale, "fan_avg", "uniform")


def group_norm(channels: int, dtype: Any = None, groups: int = 0) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups, or for ``groups = 0`` ``min(C // 4, 32)`` (score_sde's NCSN++ rule; its DDPM
    uses 32 always); statistics in float32 whatever ``dtype``."""
    return nn.GroupNorm(num_groups=groups or min(channels // 4, 32), epsilon=1e-6, dtype=dtype)


def conv(features: int, kernel: int = 3, stride: int = 1, init_scale: float = 1.0, padding: Any = "SAME",
         dtype: Any = None) -> nn.Conv:
    """A 2-D convolution with score_sde's initialization; ``dtype`` the compute dtype (parameters stay float32)."""
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding,
                   kernel_init=default_init(init_scale), bias_init=nn.initializers.zeros, dtype=dtype)


def dense(features: int, dtype: Any = None, init_scale: float = 1.0) -> nn.Dense:
    return nn.Dense(features, kernel_init=default_init(init_scale), bias_init=nn.initializers.zeros, dtype=dtype)


def counted(block_cls: type, remat: bool) -> Callable:
    """A factory of ``block_cls`` modules named ``<Class>_0, _1, ...`` in creation order — the names Flax gives them
    anyway — optionally rematerialized (``nn.remat``: activations recomputed in the backward pass, ``train``, the
    third call argument, static). Equal names keep the parameters of a remat and a plain network identical."""
    wrapped = nn.remat(block_cls, static_argnums=(3,)) if remat else block_cls
    count = [0]

    def make(**kw):
        name = f"{block_cls.__name__}_{count[0]}"
        count[0] += 1
        return wrapped(name=name, **kw)

    return make


class NIN(nn.Module):
    """A per-pixel linear layer ``y = x W + b`` (score_sde's network-in-network), default scale 0.1."""

    features: int
    init_scale: float = 0.1
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        w = self.param("W", default_init(self.init_scale), (x.shape[-1], self.features))
        b = self.param("b", nn.initializers.zeros, (self.features,))
        if self.dtype is not None:
            x, w, b = x.astype(self.dtype), w.astype(self.dtype), b.astype(self.dtype)
        return jnp.einsum("...c,cd->...d", x, w) + b


def sinusoidal_embedding(t: Array, dim: int, max_positions: int = 10000) -> Array:
    """``[sin(t ω_i), cos(t ω_i)]`` with ``ω_i = exp(−i log(max_positions)/(dim/2 − 1))``. ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_positions) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class GaussianFourierProjection(nn.Module):
    """``[sin(2π x W), cos(2π x W)]`` with fixed ``W ~ N(0, scale²)`` of size ``embedding_size``
    (kept in ``params`` but not trained: ``stop_gradient``). ``[B] -> [B, 2·embedding_size]``."""

    embedding_size: int = 256
    scale: float = 16.0

    @nn.compact
    def __call__(self, x):
        w = self.param("W", nn.initializers.normal(stddev=self.scale), (self.embedding_size,))
        w = jax.lax.stop_gradient(w)
        proj = x[:, None] * w[None, :] * 2 * jnp.pi
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


# --- FIR resampling (StyleGAN2's upfirdn2d with the [1, 3, 3, 1] kernel) -----------------------------


def _fir_kernel(k=(1, 3, 3, 1), gain: float = 1.0) -> np.ndarray:
    k = np.asarray(k, np.float32)
    k = np.outer(k, k)
    return k / k.sum() * gain


def _depthwise(x: Array, kernel: np.ndarray, pad: tuple[int, int], stride: int = 1, dilation: int = 1) -> Array:
    """Depthwise 2-D filtering of NHWC ``x`` with padding ``pad`` (before, after), input dilation."""
    channels = x.shape[-1]
    k = jnp.asarray(kernel[::-1, ::-1], x.dtype)[:, :, None, None]
    k = jnp.tile(k, (1, 1, 1, channels))
    return jax.lax.conv_general_dilated(
        x, k, window_strides=(stride, stride), padding=(pad, pad), lhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels,
    )


def fir_upsample(x: Array) -> Array:
    """2× upsampling: zero insertion, then the FIR filter with gain 4 (``upsample_2d``)."""
    return _depthwise(x, _fir_kernel(gain=4.0), pad=(2, 2), dilation=2)


def fir_downsample(x: Array) -> Array:
    """2× downsampling: the FIR filter, then every second pixel (``downsample_2d``)."""
    return _depthwise(x, _fir_kernel(), pad=(1, 1), stride=2)


def naive_upsample(x: Array) -> Array:
    b, h, w, c = x.shape
    return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)


def naive_downsample(x: Array) -> Array:
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class FIRConvDownsample(nn.Module):
    """FIR blur (padding 2) followed by a VALID 3×3 convolution with stride 2 (``Conv2d(down=True)``)."""

    features: int
    init_scale: float = 1.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = _depthwise(x, _fir_kernel(), pad=(2, 2))
        return conv(self.features, 3, stride=2, init_scale=self.init_scale, padding="VALID", dtype=self.dtype)(x)


# --- residual and attention blocks ------------------------------------------------------------------------


class ResnetBlockBigGAN(nn.Module):
    """BigGAN-style residual block with optional 2× up/down sampling (score_sde's ResnetBlockBigGANpp).

    ``h = conv(act(GN(x)))`` (resampled first), ``+ Dense(act(temb))``, ``h = conv₀(dropout(act(GN(h))))``;
    a 1×1 conv shortcut when channels change or the block resamples; ``(x + h)/√2`` with skip_rescale.
    """

    out_ch: int | None = None
    up: bool = False
    down: bool = False
    dropout: float = 0.1
    fir: bool = False
    skip_rescale: bool = True
    init_scale: float = 0.0
    act: Callable = nn.swish
    dtype: Any = None

    @nn.compact
    def __call__(self, x, temb=None, train: bool = False):
        out_ch = self.out_ch or x.shape[-1]
        dt = self.dtype
        h = self.act(group_norm(x.shape[-1], dt)(x))
        if self.up:
            up = fir_upsample if self.fir else naive_upsample
            h, x = up(h), up(x)
        elif self.down:
            down = fir_downsample if self.fir else naive_downsample
            h, x = down(h), down(x)
        h = conv(out_ch, dtype=dt)(h)
        if temb is not None:
            h = h + dense(out_ch, dt)(self.act(temb))[:, None, None, :]
        h = self.act(group_norm(out_ch, dt)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv(out_ch, init_scale=self.init_scale, dtype=dt)(h)
        if x.shape[-1] != out_ch or self.up or self.down:
            x = conv(out_ch, 1, dtype=dt)(x)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


class ResnetBlockDDPM(nn.Module):
    """DDPM's residual block: as BigGAN's without resampling; NIN shortcut only when channels change."""

    out_ch: int | None = None
    dropout: float = 0.1
    skip_rescale: bool = False
    init_scale: float = 0.0
    act: Callable = nn.swish
    dtype: Any = None
    norm_groups: int = 0  # 0: min(C // 4, 32); score_sde's DDPM: 32

    @nn.compact
    def __call__(self, x, temb=None, train: bool = False):
        out_ch = self.out_ch or x.shape[-1]
        dt = self.dtype
        h = conv(out_ch, dtype=dt)(self.act(group_norm(x.shape[-1], dt, self.norm_groups)(x)))
        if temb is not None:
            h = h + dense(out_ch, dt)(self.act(temb))[:, None, None, :]
        h = self.act(group_norm(out_ch, dt, self.norm_groups)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = conv(out_ch, init_scale=self.init_scale, dtype=dt)(h)
        if x.shape[-1] != out_ch:
            x = NIN(out_ch, dtype=dt)(x)
        return (x + h) / np.sqrt(2.0) if self.skip_rescale else x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels: ``x + NIN₀(softmax(q kᵀ/√C) v)`` on ``GN(x)``."""

    skip_rescale: bool = False
    init_scale: float = 0.0
    dtype: Any = None
    norm_groups: int = 0  # 0: min(C // 4, 32); score_sde's DDPM: 32

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        dt = self.dtype
        y = group_norm(c, dt, self.norm_groups)(x)
        q, k, v = NIN(c, dtype=dt)(y), NIN(c, dtype=dt)(y), NIN(c, dtype=dt)(y)
        logits = jnp.einsum("bhwc,bHWc->bhwHW", q, k) / np.sqrt(c)
        # softmax in at least float32 (bfloat16 logits lose the small weights)
        logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
        weights = jax.nn.softmax(logits.reshape(b, h, w, h * w), axis=-1).reshape(b, h, w, h, w).astype(v.dtype)
        y = jnp.einsum("bhwHW,bHWc->bhwc", weights, v)
        y = NIN(c, init_scale=self.init_scale, dtype=dt)(y)
        return (x + y) / np.sqrt(2.0) if self.skip_rescale else x + y


class Downsample(nn.Module):
    """DDPM's stride-2 3×3 convolution (Flax SAME padding: 0 before, 1 after) or 2×2 average."""

    with_conv: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        return conv(x.shape[-1], 3, stride=2, dtype=self.dtype)(x) if self.with_conv else naive_downsample(x)


class Upsample(nn.Module):
    """Nearest 2× upsampling, then (optionally) a 3×3 convolution."""

    with_conv: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = naive_upsample(x)
        return conv(x.shape[-1], 3, dtype=self.dtype)(x) if self.with_conv else x
