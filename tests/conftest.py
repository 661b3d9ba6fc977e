"""Shared test setup: float64 (precision is the point of closed-form checks), one XLA compilation cache per test
run, and common fixtures."""

import atexit
import os
import shutil
import tempfile

# One persistent XLA cache per test run, shared by pytest-xdist workers and by the subprocesses tests start (they
# inherit the environment): equal programs (a CLI run restarted after a kill, the same tiny U-Net in several runs)
# compile once per run. It starts empty, so a fresh clone pays every compile once; nothing outlives the run.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="jaxdiff-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)

# Test programs are small and compiled once or twice each, so compiling them is much of the suite's time. LLVM
# backend optimization level 1 instead of XLA's default 3 compiles them 2-3x faster and runs them as fast (measured
# on a quiet 2-core AVX2 machine: a small NCSN++ init compiles in 2.1 s instead of 5.6 s; 1,000 steps of a compiled
# MLP train step take 1.8 s at level 1 and 1.9 s at level 3, but 3.8 s at level 0; level 0 made the DSBM fixture 3.5x
# slower, and --xla_llvm_disable_expensive_passes gained 7 % on three files and lost 4 % on three others). Users' runs
# and benchmarks keep jaxdiff's own choice (jaxdiff._xla). Subprocesses inherit it; a test that sets XLA_FLAGS appends
# to this value.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1").strip()
# XLA's classic CPU emitter instead of its (default) fusion emitters: it compiles the suite's small programs in less CPU
# time (python -m benchmarks.cpu_emitters: a 2-level NCSN++ gradient 0.88-0.90x, a toy MLP's 1,000-step Adam chunk
# 0.58x) but runs large element-wise math 3-8x slower (tanh / exp / silu on 256 to 20,000 rows), so the
# execution-bound DSBM and reflow tests (test_flows_training.py) turn the fusion emitters back on for jaxdiff's programs
# (jaxdiff._xla.cpu_options). Whole suite, same machine, same morning: 1,377 s of CPU time before, 1,308 s with the
# classic emitter everywhere (the DSBM fixture doubled), 1,145 s with those tests given the fusion emitters back.
# Users' runs keep XLA's default.
if "--xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_cpu_use_fusion_emitters=false"

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxdiff  # noqa: E402


def all_processes():
    """One instance of every forward process, with non-default parameters where that sharpens a test."""
    return [
        jaxdiff.VPSDE(),
        jaxdiff.SubVPSDE(),
        jaxdiff.CosineVPSDE(),
        jaxdiff.VESDE(),
        jaxdiff.OUProcess(beta=0.7, sigma=1.3),
    ]


PROCESS_IDS = ["vp", "subvp", "cosine", "ve", "ou"]


@pytest.fixture(params=list(range(len(PROCESS_IDS))), ids=PROCESS_IDS)
def process(request):
    return all_processes()[request.param]


@pytest.fixture
def mixture_2d():
    """Two unequal, anisotropic components in 2-D."""
    return jaxdiff.GaussianMixture(
        weights=[0.3, 0.7], means=[[-1.0, 0.5], [1.5, -0.5]], stds=[[0.4, 0.8], [0.6, 0.3]]
    )


@pytest.fixture
def mixture_1d():
    """Three components in 1-D with unequal weights."""
    return jaxdiff.GaussianMixture(
        weights=[0.2, 0.5, 0.3], means=[[-2.0], [0.3], [2.5]], stds=[[0.3], [0.6], [0.4]]
    )


@pytest.fixture(scope="session")
def inception_state():
    """Seeded stand-in Inception weights (``jaxdiff.inception.random_state_dict``): the recipe behind
    ``fixtures/inception_random_weights.npz``."""
    from jaxdiff import inception

    return inception.random_state_dict()


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory, inception_state):
    """An ``.npz`` of :func:`inception_state` (pytorch-fid's state dict layout): a stand-in weights file."""
    path = tmp_path_factory.mktemp("inception") / "random_inception.npz"
    np.savez(path, **inception_state)
    return str(path)


def _module_fixture_groups(path: str) -> dict[str, str]:
    """Test function name → group name for the tests in the file at ``path`` that use (directly or through other
    fixtures) a module-scoped fixture defined there; groups are the connected components of "shares such a
    fixture". Read from the source (ast), so pytest-xdist's controller needs no collection."""
    import ast

    try:
        tree = ast.parse(open(path, encoding="utf-8").read())
    except (OSError, SyntaxError):
        return {}

    def scope_of(fn):
        for dec in fn.decorator_list:
            if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "fixture":
                for kw in dec.keywords:
                    if kw.arg == "scope" and isinstance(kw.value, ast.Constant):
                        return kw.value.value
                return "function"
        return None

    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    args = {fn.name: [a.arg for a in fn.args.args] for fn in functions}
    module_fixtures = {fn.name for fn in functions if scope_of(fn) == "module"}
    fixtures = {fn.name for fn in functions if scope_of(fn) is not None}
    parent = {}

    def find(name):
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    def used(name, seen=()):  # module fixtures reached from a function's arguments
        out = set()
        for arg in args.get(name, ()):
            if arg in module_fixtures:
                out.add(arg)
            if arg in fixtures and arg not in seen:
                out |= used(arg, (*seen, arg))
        return out

    tests = {fn.name: sorted(used(fn.name)) for fn in functions if fn.name.startswith("test") and scope_of(fn) is None}
    for names in tests.values():
        for other in names[1:]:
            parent[find(other)] = find(names[0])
    return {test: f"{path}::{find(names[0])}" for test, names in tests.items() if names}


@pytest.hookimpl(optionalhook=True)  # (a hook of pytest-xdist: without it, e.g. -p no:xdist, it is simply unused)
def pytest_xdist_make_scheduler(config, log):
    """``pytest -n N``: tests that share a module-scoped fixture (a trained run, a fitted model) go to one worker as
    one unit, so the fixture is built once; every other test is its own unit. (xdist's ``--dist=loadgroup`` would do
    this with marks, but does not group under pytest ≥ 9.2, whose node ids it can no longer suffix.)"""
    from xdist.scheduler import LoadScopeScheduling

    groups: dict[str, dict[str, str]] = {}

    class FixtureGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path, _, rest = nodeid.partition("::")
            if path not in groups:
                groups[path] = _module_fixture_groups(os.path.join(str(config.rootpath), path))
            return groups[path].get(rest.split("[")[0].split("::")[-1], nodeid)

    return FixtureGroupScheduling(config, log)
