"""Checkpoints of the train state with orbax: save every N steps, keep the last K, resume the latest.

A save is atomic in orbax (written to a temporary directory, then renamed), so a run killed during a
save resumes from the last complete checkpoint. ``meta`` is a small JSON dict stored beside the state
(e.g. the config and the data iterator's position).

A checkpoint is trusted only once it has been read completely: :meth:`Checkpointer.restore_readable` tries
the newest step, then older ones; a step that cannot be read while an older one can (a truncated, deleted
or garbled file: a full disk, a partial copy) is reported in one line and renamed aside (``<step>.damaged``,
never deleted), and the newest readable step is used. When no step is readable nothing is moved and
:class:`NoReadableCheckpointError` names the folder.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from jaxdiff import _validation as V


class NoReadableCheckpointError(FileNotFoundError):
    """No checkpoint of a folder can be read (the message names the folder and every step's reason)."""


def _reason(err: BaseException) -> str:
    """A one-line reason for a failed read: the innermost cause's type and the first line of its message
    (without TensorStore's spec dump)."""
    while err.__cause__ is not None and str(err.__cause__).strip():
        err = err.__cause__
    text = str(err).split(" See full TensorStore details")[0].strip().splitlines()
    line = text[0] if text else ""
    return f"{type(err).__name__}: {line[:200]}" + ("…" if len(line) > 200 else "")


_ORBAX_READ = "_read_array_index_and_device_put"  # orbax's per-array read coroutine


def _is_abandoned_read(unraisable) -> bool:
    """An orbax read of a step already reported as damaged, finalised after the failure was handled."""
    code = getattr(getattr(unraisable, "object", None), "cr_code", None)
    return code is not None and code.co_name == _ORBAX_READ


def _install_read_filter() -> None:
    """After a damaged step: drop Python's 'Exception ignored in <coroutine …>' dumps of orbax's abandoned reads of
    that step (they finish in orbax's background loop after the failure was reported in one line); every other
    unraisable goes to the hook that was installed before."""
    previous = sys.unraisablehook
    if getattr(previous, "_jaxdiff_read_filter", False):
        return

    def hook(unraisable):
        if not _is_abandoned_read(unraisable):
            previous(unraisable)

    hook._jaxdiff_read_filter = True
    sys.unraisablehook = hook


class Checkpointer:
    """``Checkpointer(workdir, max_to_keep=K)``: ``save(step, state, meta)``, ``latest_step()``,
    ``restore(like_state, step=None) -> (state, meta)``."""

    def __init__(self, directory: str, *, max_to_keep: int = 3, asynchronous: bool = False):
        V.check_int_at_least("max_to_keep", max_to_keep, 1)
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=asynchronous)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, meta: dict | None = None) -> None:
        """Save ``state`` (any pytree of arrays) and ``meta`` (JSON) as checkpoint ``step``."""
        self._manager.save(
            int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {}))
        )

    def wait(self) -> None:
        """Block until pending (asynchronous) saves are on disk."""
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def restore(self, like_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore checkpoint ``step`` (default: the latest) into the structure, shapes, dtypes and
        shardings of ``like_state`` (a state or its ``jax.eval_shape``; leaves without a sharding are
        restored onto this process's first device, whatever topology saved them). No fallback: see
        :meth:`restore_readable`."""
        step = self.latest_step() if step is None else int(step)
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}.")
        local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

        def abstract_leaf(x):
            leaf = ocp.utils.to_shape_dtype_struct(x)
            if getattr(leaf, "sharding", None) is None:  # e.g. a multi-host checkpoint restored on one device
                leaf = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=local)
            return leaf

        abstract = jax.tree_util.tree_map(abstract_leaf, like_state)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
        return restored["state"], dict(restored["meta"] or {})

    def restore_readable(self, like_state: Any, *, validate: Callable[[Any, dict], None] | None = None,
                         log: Callable[[str], None] | None = None, move_aside: bool = True) -> tuple[Any, dict, int]:
        """``(state, meta, step)`` of the newest checkpoint that can be read completely (and passes
        ``validate(state, meta)``, which raises on a bad ``meta``). Newer steps that cannot be read are
        reported through ``log`` in one line each and, when an older step is readable and ``move_aside``,
        renamed to ``<step>.damaged`` (never deleted). Raises :class:`NoReadableCheckpointError` (nothing
        moved) when no step is readable, ``FileNotFoundError`` when there is none."""
        log = log or (lambda msg: None)
        steps = sorted(self.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}.")
        failed: list[tuple[int, str]] = []
        for step in steps:
            try:
                state, meta = self.restore(like_state, step)
                if validate is not None:
                    validate(state, meta)
            except Exception as err:  # noqa: BLE001  (any failure to read is a damaged step)
                failed.append((step, _reason(err)))
                _install_read_filter()
                continue
            for bad, reason in failed:
                where = self._move_aside(bad) if move_aside else os.path.join(self.directory, str(bad))
                log(f"warning: checkpoint step {bad} in {self.directory} cannot be read ({reason}); "
                    f"{'moved aside to ' if move_aside else 'left at '}{where}; using step {step}")
            return state, meta, step
        details = "; ".join(f"step {s}: {r}" for s, r in failed)
        raise NoReadableCheckpointError(f"no checkpoint in {self.directory} can be read ({details}); nothing was "
                                        "moved. If the run's config or code changed since it was saved, use the "
                                        "original; else restore the folder from a copy.")

    def _move_aside(self, step: int) -> str:
        """Rename the folder of ``step`` to ``<step>.damaged`` (``.damaged.1``, … if taken); the manager no longer
        sees it. Returns the new path."""
        source = os.path.join(self.directory, str(step))
        target = source + ".damaged"
        k = 0
        while os.path.exists(target):
            k += 1
            target = f"{source}.damaged.{k}"
        if os.path.exists(source):
            os.rename(source, target)
        self._manager.reload()
        return target

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
