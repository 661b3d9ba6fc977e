"""Bad input is refused in Python, before anything compiles, with a message that names the argument,
its value and what is allowed."""

import jax
import jax.numpy as jnp
import pytest

import jaxdiff

CASES = [
    (lambda: jaxdiff.VPSDE(beta_min=-0.1), ValueError, r"beta_min must be finite and > 0, got beta_min=-0.1"),
    (lambda: jaxdiff.VPSDE(beta_min=5.0, beta_max=1.0), ValueError, r"beta_min must be <= beta_max, got beta_min=5.0 and beta_max=1.0"),
    (lambda: jaxdiff.SubVPSDE(beta_max=float("nan")), ValueError, r"beta_max must be finite and > 0"),
    (lambda: jaxdiff.VESDE(sigma_min=0.0), ValueError, r"sigma_min must be finite and > 0, got sigma_min=0.0"),
    (lambda: jaxdiff.VESDE(sigma_min=10.0, sigma_max=1.0), ValueError, r"sigma_min must be < sigma_max, got sigma_min=10.0 and sigma_max=1.0"),
    (lambda: jaxdiff.OUProcess(beta=-1.0), ValueError, r"beta must be finite and > 0, got beta=-1.0"),
    (lambda: jaxdiff.OUProcess(sigma=1.0, s=2.0), ValueError, r"sigma= or s=, not both"),
    (lambda: jaxdiff.CosineVPSDE(t_max=1.0), ValueError, r"t_max must be < 1 for CosineVPSDE"),
    (lambda: jaxdiff.VPSDE(t_min=0.5, t_max=0.1), ValueError, r"t_min must be < t_max, got t_min=0.5 and t_max=0.1"),
    (lambda: jaxdiff.VPSDE().marginal_std(1.5), ValueError, r"t must lie in \[0.0, 1.0\] for VPSDE, got t=1.5"),
    (lambda: jaxdiff.VESDE().marginal_std(jnp.array([0.2, -0.1])), ValueError, r"t must lie in \[0.0, 1.0\] for VESDE, got t=\[0.2, -0.1\]"),
    (lambda: jaxdiff.OUProcess().marginal_std(-2.0), ValueError, r"t must lie in \[0.0, inf\] for OUProcess, got t=-2.0"),
    (lambda: jaxdiff.VPSDE().marginal_std(float("nan")), ValueError, r"t must be finite"),
    (
        lambda: jaxdiff.VPSDE().marginal_sample(jax.random.PRNGKey(0), jnp.ones((4, 2)), jnp.ones((3,)) * 0.5),
        ValueError,
        r"t of shape \(3,\) must match the batch axis of x0: x0.shape=\(4, 2\)",
    ),
    (lambda: jaxdiff.VPSDE().drift(jnp.ones((4, 2)), jnp.ones((4, 1)) * 0.5), ValueError, r"t must be a scalar or have shape \(batch,\)"),
    (lambda: jaxdiff.VPSDE().drift(jnp.ones((4, 2), jnp.int32), 0.5), TypeError, r"x must have a floating dtype, got x.dtype=int32"),
    (
        lambda: jaxdiff.conditional_score(jaxdiff.VPSDE(), jnp.ones((2, 2), jnp.float32), jnp.ones((2, 2), jnp.float64), 0.5),
        TypeError,
        r"x_t and x0 must have the same dtype, got x_t.dtype=float32 and x0.dtype=float64",
    ),
    (
        lambda: jaxdiff.conditional_score(jaxdiff.VPSDE(), jnp.ones((2, 2)), jnp.ones((2, 3)), 0.5),
        ValueError,
        r"x_t and x0 must have the same shape",
    ),
    (
        lambda: jaxdiff.reverse_sde_drift(jaxdiff.VPSDE(), jnp.ones((2, 2)), 0.5, jnp.ones((2,))),
        ValueError,
        r"x and score must have the same shape",
    ),
    (lambda: jaxdiff.VPSDE().prior_log_prob(jnp.array(1.0)), ValueError, r"x must have a batch axis"),
    (lambda: jaxdiff.euler_maruyama_step(None, jnp.ones((2, 1)), 0.5, 0.1, lambda x, t: x, lambda t: 1.0), ValueError, r"key must be a PRNG key"),
]


@pytest.mark.parametrize("make, error, pattern", CASES)
def test_clear_errors(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_values_are_not_checked_inside_traces():
    """Inside jit the time is unknown: no host check, no error, and the formula is evaluated."""
    out = jax.jit(jaxdiff.VPSDE().marginal_std)(jnp.array(0.5))
    assert float(out) > 0
