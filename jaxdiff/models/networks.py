"""Score networks: score_sde's NCSN++/DDPM++ U-Net, its DDPM U-Net, and an MLP for low dimensions.

Every network maps ``(x, noise_in)`` to an output of ``x``'s shape and knows nothing of processes:
what ``noise_in`` is (``999 t``, ``σ(t)``, ...) and what the output means (ε, score, x₀, v, with or
without ``1/σ`` scaling) is decided by a :class:`jaxdiff.Parameterization`. Images are NHWC.

``num_classes = K > 0`` makes a network class-conditional (score_sde's and EDM's networks do it this way): a
learned embedding of the label, from a table of ``K + 1`` rows whose last row (index ``K``) is the "null" class of
classifier-free guidance, is added to the time embedding. ``cond`` is an int array ``[batch]`` of labels in
``[0, K]``, or None for the null class (the unconditional branch). ``num_classes = 0`` (default) is the
unconditional network, with score_sde's parameter counts; it refuses a ``cond``.

``dtype`` is the compute dtype (``jnp.bfloat16`` for mixed precision: parameters stay float32, each layer casts
them; group-norm statistics and the attention softmax stay float32; the output is returned in the input's dtype);
None computes in the inputs' dtype. ``remat=True`` rematerializes every residual block (``nn.remat``: its
activations are recomputed in the backward pass instead of stored), with the same parameter names and values.

``out_heads = k`` makes the last layer emit ``k`` stacked outputs along the channel axis (the interpolant's
velocity and noise heads from one network); the default 1 is score_sde's network. Parameter counts equal
score_sde's: DDPM++ continuous (CIFAR-10) 61,804,419; NCSN++ continuous
62,758,915 (128 of them the fixed Fourier embedding); DDPM continuous 35,218,947.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxdiff.models.layers import (
    NIN,  # noqa: F401  (re-exported for users building their own blocks)
    AttnBlock,
    Downsample,
    FIRConvDownsample,
    GaussianFourierProjection,
    ResnetBlockBigGAN,
    ResnetBlockDDPM,
    Upsample,
    conv,
    counted,
    default_init,
    dense,
    group_norm,
    sinusoidal_embedding,
)


def class_labels(cond, num_classes: int, batch: int):
    """Labels ``[batch]`` for the class embedding: ``cond`` itself, or the null class ``num_classes`` when ``cond``
    is None. Refuses a condition for an unconditional network (``num_classes = 0``)."""
    if num_classes <= 0:
        if cond is not None:
            raise ValueError("this network is unconditional (num_classes=0) but received cond=...; build it with "
                             "num_classes=K (config: model.num_classes) to condition on K classes.")
        return None
    if cond is None:
        return jnp.full((batch,), num_classes, jnp.int32)
    cond = jnp.asarray(cond)
    if not jnp.issubdtype(cond.dtype, jnp.integer):
        raise TypeError(f"cond must hold integer class labels, got dtype {cond.dtype}.")
    return jnp.broadcast_to(cond.astype(jnp.int32), (batch,))


class ClassEmbedding(nn.Module):
    """``[batch]`` labels in ``[0, num_classes]`` (``num_classes`` = null) → ``[batch, features]``."""

    num_classes: int
    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, labels):
        table = nn.Embed(self.num_classes + 1, self.features, embedding_init=nn.initializers.normal(stddev=1.0),
                         dtype=self.dtype)
        return table(labels)


class _TimeEmbedding(nn.Module):
    """``Dense(4nf) ∘ act ∘ Dense(4nf)`` of a sinusoidal embedding of ``noise_in`` or a Gaussian
    Fourier embedding of ``log noise_in``."""

    nf: int
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    dtype: Any = None

    @nn.compact
    def __call__(self, noise_in):
        if self.embedding_type == "fourier":
            emb = GaussianFourierProjection(embedding_size=self.nf, scale=self.fourier_scale)(jnp.log(noise_in))
        else:
            emb = sinusoidal_embedding(noise_in, self.nf)
        emb = dense(4 * self.nf, self.dtype)(emb)
        return dense(4 * self.nf, self.dtype)(nn.swish(emb))


class NCSNpp(nn.Module):
    """score_sde's NCSN++ / DDPM++ U-Net (``resblock_type="biggan"``).

    DDPM++ (VP): ``embedding_type="positional"``, ``progressive_input="none"``, ``fir=False``,
    ``centered=True``. NCSN++ (VE): ``embedding_type="fourier"`` (of ``log σ``),
    ``progressive_input="residual"`` (an FIR-downsampled input pyramid merged at each level),
    ``fir=True``, ``centered=False`` (inputs in [0, 1] are mapped to ``2x − 1`` inside).
    """

    nf: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.1
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    progressive_input: str = "none"
    fir: bool = False
    skip_rescale: bool = True
    init_scale: float = 0.0
    centered: bool = True
    out_heads: int = 1
    num_classes: int = 0
    dtype: Any = None
    remat: bool = False

    @nn.compact
    def __call__(self, x, noise_in, train: bool = False, cond=None):
        in_dtype, dt = x.dtype, self.dtype
        if dt is not None:
            x = x.astype(dt)
        if self.embedding_type not in ("positional", "fourier"):
            raise ValueError(f"embedding_type must be 'positional' or 'fourier', got {self.embedding_type!r}.")
        if self.progressive_input not in ("none", "residual"):
            raise ValueError(f"progressive_input must be 'none' or 'residual', got {self.progressive_input!r}.")
        temb = _TimeEmbedding(self.nf, self.embedding_type, self.fourier_scale, dt)(noise_in)
        labels = class_labels(cond, self.num_classes, x.shape[0])
        if labels is not None:
            temb = temb + ClassEmbedding(self.num_classes, temb.shape[-1], dt)(labels)
        make_block = counted(ResnetBlockBigGAN, self.remat)

        def resblock(**kw):
            return make_block(dropout=self.dropout, fir=self.fir, skip_rescale=self.skip_rescale,
                              init_scale=self.init_scale, dtype=dt, **kw)

        def attention():
            return AttnBlock(skip_rescale=self.skip_rescale, init_scale=self.init_scale, dtype=dt)

        if not self.centered:
            x = 2.0 * x - 1.0
        pyramid = x
        hs = [conv(self.nf, dtype=dt)(x)]
        levels = len(self.ch_mult)
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = resblock(out_ch=self.nf * mult)(hs[-1], temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = attention()(h)
                hs.append(h)
            if level != levels - 1:
                h = resblock(down=True)(hs[-1], temb, train)
                if self.progressive_input == "residual":
                    if self.fir:
                        pyramid = FIRConvDownsample(h.shape[-1], dtype=dt)(pyramid)
                    else:
                        pyramid = conv(h.shape[-1], 3, stride=2, dtype=dt)(pyramid)
                    pyramid = (pyramid + h) / np.sqrt(2.0) if self.skip_rescale else pyramid + h
                    h = pyramid
                hs.append(h)

        h = hs[-1]
        h = resblock()(h, temb, train)
        h = attention()(h)
        h = resblock()(h, temb, train)

        for level in reversed(range(levels)):
            for _ in range(self.num_res_blocks + 1):
                h = resblock(out_ch=self.nf * self.ch_mult[level])(jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
            if h.shape[1] in self.attn_resolutions:
                h = attention()(h)
            if level != 0:
                h = resblock(up=True)(h, temb, train)
        assert not hs
        h = nn.swish(group_norm(h.shape[-1], dt)(h))
        return conv(x.shape[-1] * self.out_heads, init_scale=self.init_scale, dtype=dt)(h).astype(in_dtype)


class DDPM(nn.Module):
    """The DDPM U-Net of Ho et al. as in score_sde's ``ddpm.py`` (inputs centered to [−1, 1]).

    ``norm_groups``: the group count of every GroupNorm; 0 (default) takes ``min(C // 4, 32)``, which equals
    score_sde's fixed 32 for its CIFAR-10 widths (``nf = 128``); ``norm_groups = 32`` is score_sde's DDPM at any width
    (set by the checkpoint importer)."""

    nf: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.1
    resamp_with_conv: bool = True
    out_heads: int = 1
    num_classes: int = 0
    dtype: Any = None
    remat: bool = False
    norm_groups: int = 0

    @nn.compact
    def __call__(self, x, noise_in, train: bool = False, cond=None):
        in_dtype, dt = x.dtype, self.dtype
        if dt is not None:
            x = x.astype(dt)
        temb = _TimeEmbedding(self.nf, "positional", dtype=dt)(noise_in)
        groups = self.norm_groups
        labels = class_labels(cond, self.num_classes, x.shape[0])
        if labels is not None:
            temb = temb + ClassEmbedding(self.num_classes, temb.shape[-1], dt)(labels)
        make_block = counted(ResnetBlockDDPM, self.remat)

        def resblock(**kw):
            return make_block(dropout=self.dropout, dtype=dt, norm_groups=groups, **kw)

        hs = [conv(self.nf, dtype=dt)(x)]
        levels = len(self.ch_mult)
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = resblock(out_ch=self.nf * mult)(hs[-1], temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = AttnBlock(dtype=dt, norm_groups=groups)(h)
                hs.append(h)
            if level != levels - 1:
                hs.append(Downsample(self.resamp_with_conv, dtype=dt)(hs[-1]))
        h = hs[-1]
        h = resblock()(h, temb, train)
        h = AttnBlock(dtype=dt, norm_groups=groups)(h)
        h = resblock()(h, temb, train)
        for level in reversed(range(levels)):
            for _ in range(self.num_res_blocks + 1):
                h = resblock(out_ch=self.nf * self.ch_mult[level])(jnp.concatenate([h, hs.pop()], axis=-1), temb, train)
            if h.shape[1] in self.attn_resolutions:
                h = AttnBlock(dtype=dt, norm_groups=groups)(h)
            if level != 0:
                h = Upsample(self.resamp_with_conv, dtype=dt)(h)
        assert not hs
        h = nn.swish(group_norm(h.shape[-1], dt, groups)(h))
        return conv(x.shape[-1] * self.out_heads, init_scale=0.0, dtype=dt)(h).astype(in_dtype)


class ScoreMLP(nn.Module):
    """An MLP for low-dimensional data: ``[x, emb(noise_in)] → (Dense → swish)×L → Dense``.

    ``embedding_type`` "positional" (sinusoidal of ``noise_in``) or "fourier" (of ``log noise_in``);
    the last layer starts at zero (``init_scale``), so the initial output is 0.
    """

    hidden: Sequence[int] = (256, 256, 256)
    embedding_dim: int = 128
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    init_scale: float = 0.0
    out_heads: int = 1
    num_classes: int = 0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, noise_in, train: bool = False, cond=None):
        in_dtype, dt = x.dtype, self.dtype
        if dt is not None:
            x = x.astype(dt)
        if self.embedding_type == "fourier":
            emb = GaussianFourierProjection(self.embedding_dim // 2, self.fourier_scale)(jnp.log(noise_in))
        else:
            emb = sinusoidal_embedding(noise_in, self.embedding_dim)
        emb = nn.Dense(self.embedding_dim, kernel_init=default_init(), dtype=dt)(emb)
        labels = class_labels(cond, self.num_classes, x.shape[0])
        if labels is not None:
            emb = emb + ClassEmbedding(self.num_classes, self.embedding_dim, dt)(labels)
        emb = nn.swish(emb)
        shape = x.shape
        h = jnp.concatenate([x.reshape(shape[0], -1), emb.astype(x.dtype)], axis=-1)
        for width in self.hidden:
            h = nn.swish(nn.Dense(width, kernel_init=default_init(), dtype=dt)(h))
        out = nn.Dense(int(np.prod(shape[1:])) * self.out_heads, kernel_init=default_init(self.init_scale), dtype=dt)(h)
        return out.reshape(*shape[:-1], shape[-1] * self.out_heads).astype(in_dtype)
