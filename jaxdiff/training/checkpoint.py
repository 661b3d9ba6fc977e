"""Checkpoints of the train state with orbax: save every N steps, keep the last K, resume the latest.

A save is atomic in orbax (written to a temporary directory, then renamed), so a run killed during a
save resumes from the last complete checkpoint. ``meta`` is a small JSON dict stored beside the state
(e.g. the config and the data iterator's position).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxdiff import _validation as V


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
        restored onto this process's first device, whatever topology saved them)."""
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

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
