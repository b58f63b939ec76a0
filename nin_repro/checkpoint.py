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
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax

from nin_repro.errors import TrainingFailed


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
        self._quiet = _QuietBackgroundErrors().__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        try:
            try:
                self.manager.wait_until_finished()  # a background save that failed raises here
            finally:
                self.manager.close()
        except Exception as e:
            # Our own message wins, and one that says a checkpoint was saved must not stand.
            if exc is None or type(exc).__name__ == "Interrupted":
                raise self.storage_error(e) from None
        finally:
            self._quiet.__exit__()

    def storage_error(self, e: BaseException) -> TrainingFailed:
        """One line for a checkpoint that could not be written (full disk, permissions, ...)."""
        try:
            last = self.manager.latest_step()
        except Exception:
            last = None
        kept = f"the last good checkpoint (step {last}) is kept" if last is not None else "no earlier checkpoint of this run exists"
        return TrainingFailed(
            f"could not write a checkpoint in {self.dir} ({describe_storage_error(e)}); {kept}: free space under --workdir (or fix its permissions) "
            "and run the same command again to resume"
        )

    def restore(self, template_state) -> tuple[Any, dict] | None:
        """The latest checkpoint that restores whole; a damaged one (unreadable metadata or arrays)
        is skipped with a warning for the one before it. None: no checkpoint (a fresh start)."""
        import warnings

        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, template_state)
        problems = []
        for step in steps:
            try:
                restored = self.manager.restore(
                    step,
                    args=self._ocp.args.Composite(state=self._ocp.args.StandardRestore(abstract), meta=self._ocp.args.JsonRestore()),
                )
                meta = dict(restored["meta"])
                if not isinstance(meta.get("position"), dict):
                    raise ValueError("its metadata has no position")
            except Exception as e:  # orbax / tensorstore / json errors alike: the checkpoint is not whole
                problems.append(f"step {step}: {describe_storage_error(e)}")
                continue
            if problems:
                # Removed, so that the resumed run can save those steps again.
                for bad in steps[: steps.index(step)]:
                    self.manager.delete(bad)
                warnings.warn(f"damaged checkpoint(s) in {self.dir} removed ({'; '.join(problems)}); resuming from step {step}", stacklevel=2)
            return restored["state"], meta
        raise TrainingFailed(f"every checkpoint in {self.dir} is damaged ({'; '.join(problems)}): delete that folder to start the run afresh, or restore it from a copy")

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
        try:
            # Also raises what an earlier background save hit (orbax waits for it first).
            self.manager.save(step, args=self._ocp.args.Composite(state=self._ocp.args.StandardSave(state), meta=self._ocp.args.JsonSave(meta)))
        except Exception as e:
            raise self.storage_error(e) from None
        self._last = time.monotonic()
        return True


def describe_storage_error(e: BaseException) -> str:
    """A short reason for a failed write: the OSError in the chain (orbax and tensorstore wrap it,
    e.g. ``ValueError('RESOURCE_EXHAUSTED: ...')`` from ``OSError(ENOSPC)``), else the first line."""
    seen, cause = set(), e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(e).split())
    if "RESOURCE_EXHAUSTED" in text or "No space left" in text:
        return "No space left on device"
    if "PERMISSION_DENIED" in text or "Permission denied" in text:
        return "Permission denied"
    return f"{type(e).__name__}: {text[:150]}"


class _QuietBackgroundErrors:
    """While a run checkpoints, orbax's background threads log every failed write (absl ERROR
    records with tracebacks, asyncio 'exception was never retrieved', 'Event loop is closed'
    printed through sys.excepthook): hundreds of lines for one full disk. The failure itself is
    raised by save()/wait and reported in one line, so these copies are dropped."""

    def __enter__(self) -> "_QuietBackgroundErrors":
        self._filter = _DropOrbaxErrors()
        for name in ("absl", "asyncio"):
            logging.getLogger(name).addFilter(self._filter)
        self._hook = sys.excepthook
        hook = self._hook

        def excepthook(tp, value, tb):
            if isinstance(value, RuntimeError) and "Event loop is closed" in str(value):
                return
            hook(tp, value, tb)

        sys.excepthook = excepthook
        return self

    def __exit__(self, *exc) -> None:
        for name in ("absl", "asyncio"):
            logging.getLogger(name).removeFilter(self._filter)
        if sys.excepthook is not self._hook:
            sys.excepthook = self._hook


class _DropOrbaxErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        if record.name == "asyncio":
            return "exception was never retrieved" not in record.getMessage()
        return "orbax" not in (record.pathname or "")
