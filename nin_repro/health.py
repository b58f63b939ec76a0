"""Is a seed still learning? The stall checks, run on the host from numbers the compiled step returns.

The paper's recipe (N(0, 0.05) init, ReLU after the last 1x1 conv, LR 0.1) has a known failure:
a class map's ReLU dies (its score is 0 for every image, so no gradient reaches it) and the run
sits at or near ln C for good (docs/paper-notes.md, "The dead last layer"). Two signs, per seed:

* a dead class: a class whose score is exactly 0 for every example of a batch. The step counts
  them on the device (``dead_classes``). ``dead_steps`` consecutive steps with at least one dead
  class is a stall, whether one map died or all of them;
* a silent net: after ``stall_epochs`` epochs the epoch's mean training loss is still within
  ``stall_tolerance`` of ln C (every class equally likely), dead maps or not.

A healthy slow start is not a stall: its maps are alive (their scores vary, even if the loss
sits near ln C for a while) and its loss leaves ln C before ``stall_epochs``. The defaults in
``Recipe`` come from ``nin-repro init-study`` (results/init-study.md).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass
class StallWatch:
    """One seed's stall check; its fields go into checkpoints, so a resumed run keeps counting."""

    num_classes: int
    dead_steps: int  # N: consecutive steps with >= 1 dead class map
    stall_epochs: float  # E: the loss must have left ln C by the end of this epoch
    stall_tolerance: float  # "at ln C" = within this of it
    run: int = 0  # current streak of steps with a dead class
    max_run: int = 0
    max_dead: int = 0  # most class maps dead at once in a batch
    stalled: str | None = None  # why, once stalled
    stall_step: int | None = None

    def observe_steps(self, first_step: int, dead_classes_k: np.ndarray) -> bool:
        """The dead-class counts of steps first_step, first_step + 1, ...; True if this stalls the seed."""
        for i, dead in enumerate(np.asarray(dead_classes_k).tolist()):
            self.max_dead = max(self.max_dead, int(dead))
            self.run = self.run + 1 if dead > 0 else 0
            self.max_run = max(self.max_run, self.run)
            if self.stalled is None and self.run >= self.dead_steps:
                self.stalled = f"stalled at step {first_step + i}: {int(dead)}/{self.num_classes} class maps dead (at least one dead for {self.dead_steps} steps in a row)"
                self.stall_step = first_step + i
                return True
        return False

    def observe_epoch(self, epochs_done: int, step: int, mean_loss: float) -> bool:
        """The mean training loss of the epoch just ended; True if this stalls the seed."""
        ln_c = math.log(self.num_classes)
        if self.stalled is None and epochs_done >= self.stall_epochs and abs(mean_loss - ln_c) <= self.stall_tolerance:
            self.stalled = (
                f"stalled at step {step}: training loss {mean_loss:.4f} still within {self.stall_tolerance:g} of ln({self.num_classes}) = {ln_c:.4f} after {epochs_done} epochs"
            )
            self.stall_step = step
            return True
        return False

    def state(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k in ("run", "max_run", "max_dead", "stalled", "stall_step")}
