"""Checkpoints that let a run survive pre-emption: orbax, atomic, async, the last few kept.

A checkpoint holds the training state (parameters and optimizer state) and, as JSON, where the
run stood: epoch, position in the epoch, step, the epoch's running sums and the plateau rule's
state. The data order and every step's randomness are functions of (seed, epoch) and
(seed, step), so a resumed run continues exactly as an uninterrupted one would.
Checkpoints live in ``<run>/checkpoints/<recipe fingerprint>/``: a run with another recipe in the
same folder starts afresh instead of resuming something else. Seeds trained at once (vmap) share
one checkpoint of their stacked state, ``<first seed's run>/checkpoints/<fingerprint>-seeds_0_1_2/``
(a retried seed: ``-seeds_0_1a1_2`` or, alone, ``-attempt_1``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import jax


def recipe_fingerprint(recipe) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(recipe), sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpointer:
    """Saves at most every ``every_s`` seconds when asked at an epoch boundary, always when forced
    (end of run, SIGTERM/SIGINT), keeping the last ``keep``."""

    def __init__(self, run_dir: Path, recipe, every_s: float = 600.0, keep: int = 2, seeds: list[int] | None = None, attempts: list[int] | None = None):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        # Several seeds trained at once keep their stacked state under a name that lists them, so
        # it is never mistaken for (or restored as) one seed's own checkpoint; a retried seed
        # (attempt a > 0) is named with its attempt.
        seeds, attempts = list(seeds or [0]), list(attempts or [0] * len(seeds or [0]))
        names = [f"{s}" + (f"a{a}" if a else "") for s, a in zip(seeds, attempts)]
        group = f"-seeds_{'_'.join(names)}" if len(seeds) > 1 else (f"-attempt_{attempts[0]}" if attempts[0] else "")
        self.dir = (Path(run_dir) / "checkpoints" / (recipe_fingerprint(recipe) + group)).resolve()
        self.every_s = every_s
        self._last = time.monotonic()
        self.manager = ocp.CheckpointManager(
            self.dir,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True),
        )
        self.stop_requested: str | None = None
        self._old_handlers: dict[int, Any] = {}

    # -- signals: finish the current chunk, checkpoint, then stop
    def __enter__(self) -> "Checkpointer":
        def request_stop(signum, _frame):
            self.stop_requested = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old_handlers[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self.manager.wait_until_finished()
        self.manager.close()

    def restore(self, template_state) -> tuple[Any, dict] | None:
        step = self.manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, template_state)
        restored = self.manager.restore(
            step,
            args=self._ocp.args.Composite(state=self._ocp.args.StandardRestore(abstract), meta=self._ocp.args.JsonRestore()),
        )
        return restored["state"], dict(restored["meta"])

    def due(self) -> bool:
        """Whether an unforced save would write now (``every_s`` since the last one)."""
        return time.monotonic() - self._last >= self.every_s

    def save(self, step: int, state, meta: dict, *, force: bool = False) -> bool:
        if not force and not self.due():
            return False
        if self.manager.latest_step() == step:
            return False
        # Orbax copies the arrays to the host before save() returns, so the donated state can
        # be updated by the next step while the files are written in the background.
        self.manager.save(step, args=self._ocp.args.Composite(state=self._ocp.args.StandardSave(state), meta=self._ocp.args.JsonSave(meta)))
        self._last = time.monotonic()
        return True
