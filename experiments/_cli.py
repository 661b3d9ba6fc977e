"""What every command-line entry point shares: mistakes end in one ``error: …`` line and exit status 2, before
anything is compiled or written (a config file that is missing or broken, an unknown ``--config.*`` key with
the closest valid names, a flag of the wrong type)."""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from typing import Any, Callable, NoReturn


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def load_config_file(spec: str) -> Any:
    """``get_config()`` of a config file (``path`` or ``path:argument``, as ml_collections' ``--config=``)."""
    path, arg = spec, None
    if not os.path.exists(path) and ":" in spec:
        path, arg = spec.split(":", 1)
    if not os.path.exists(path):
        fail(f"--config={spec!r}: no such file (configs live in experiments/configs/, e.g. "
             "--config=experiments/configs/vp_digits.py).")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        fail(f"--config={spec!r} is not a readable file.")
    try:
        module_spec = importlib.util.spec_from_file_location("_jaxdiff_cli_config", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001  (a broken config file is the user's mistake: say so)
        fail(f"--config={spec!r} cannot be loaded: {type(err).__name__}: {err}")
    if not callable(getattr(module, "get_config", None)):
        fail(f"--config={spec!r} defines no get_config() function.")
    try:
        return module.get_config() if arg is None else module.get_config(arg)
    except Exception as err:  # noqa: BLE001
        fail(f"--config={spec!r}: get_config({'' if arg is None else repr(arg)}) failed: {type(err).__name__}: {err}")


def _keys(config: Any, prefix: str = "") -> list[str]:
    out = []
    for key, value in config.items():
        name = prefix + key
        out.append(name)
        if hasattr(value, "items"):
            out.extend(_keys(value, name + "."))
    return out


def check_config_args(argv: list[str], default: str) -> None:
    """Exit 2 for a missing or broken ``--config`` file and for ``--config.KEY=…`` overrides whose key the config
    does not have (naming the closest valid keys)."""
    spec = default
    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
    config = load_config_file(spec)
    keys = _keys(config)
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config."):].split("=", 1)[0]
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
            section = key.rsplit(".", 1)[0] if "." in key else ""
            hint = f"did you mean {', '.join(close)}?" if close else (
                f"the keys of {section!r} are {', '.join(k for k in keys if k.rsplit('.', 1)[0] == section)}"
                if section in keys else "see jaxdiff.training.default_config() for the schema")
            fail(f"unknown config key {key!r} in {arg!r}: {hint}")


def run(main: Callable, *, config_default: str | None = None) -> None:
    """``absl.app.run(main)`` whose flag mistakes exit 2 with one message (after :func:`check_config_args`
    when the command takes a ``--config``)."""
    from absl import app, flags

    if config_default is not None and not any(a in ("--help", "--helpfull", "-h") for a in sys.argv[1:]):
        check_config_args(sys.argv, config_default)

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as err:
            fail(str(err))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            fail(f"bad flag: {type(err).__name__}: {err}")

    app.run(main, flags_parser=parse)
