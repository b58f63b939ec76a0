"""Progress display for ``train.train_and_evaluate`` (the ``train.Progress`` protocol).

On a terminal: a rich progress bar (description, epoch, loss, img/s, ETA) with one summary line
per epoch printed above it. Elsewhere (CI, pipes, log files): only the plain per-epoch lines,
no bar and no control characters, e.g.
``seed 0  epoch 3/260  loss 1.2345  train err 45.1%  test err 47.2%  1234 img/s  eta 1h02m``.
"""

from __future__ import annotations

import math
import time

from rich.console import Console


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{sec:02d}s"
    return f"{sec}s"


class NullProgress:
    """Shows nothing."""

    def start(self, total_steps: int, description: str) -> None:
        pass

    def update(self, step: int, *, epoch: float, loss: float, img_per_s: float) -> None:
        pass

    def epoch_end(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress:
    def __init__(self, console: Console | None = None):
        self.console = console if console is not None else Console(stderr=True)
        self._bar = None
        self._task = None
        self._reset(0, "")

    def _reset(self, total_steps: int, description: str) -> None:
        self.total_steps, self.description = total_steps, description
        self.step, self.steps_per_epoch = 0, None
        self._t0 = time.monotonic()
        self._ep_steps, self._ep_time_per_img = 0, 0.0  # for the epoch's mean img/s

    # -------------------------------------------------------------- protocol

    def start(self, total_steps: int, description: str) -> None:
        self.close()
        self._reset(total_steps, description)
        if self.console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("epoch {task.fields[epoch]}"),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[ips]} img/s"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total_steps, epoch="-", loss="-", ips="-")

    def update(self, step: int, *, epoch: float, loss: float, img_per_s: float) -> None:
        k = step - self.step
        if k > 0 and img_per_s > 0:
            self._ep_steps += k
            self._ep_time_per_img += k / img_per_s
        self.step = step
        if epoch > 0:
            self.steps_per_epoch = step / epoch
        if self._bar is not None:
            self._bar.update(self._task, completed=step, epoch=f"{epoch:.2f}", loss=f"{loss:.4f}", ips=f"{img_per_s:.0f}")

    def epoch_end(self, record: dict) -> None:
        line = self.format_epoch(record)
        self._ep_steps, self._ep_time_per_img = 0, 0.0
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar, self._task = None, None

    # -------------------------------------------------------------- the line

    def format_epoch(self, record: dict) -> str:
        parts = []
        if self.description:
            parts.append(self.description)
        if "seed" in record:  # seeds trained at once: one line per seed
            parts.append(f"seed {record['seed']}:")
        epoch = record.get("epoch")
        if self.steps_per_epoch and self.total_steps:
            total = math.ceil(self.total_steps / self.steps_per_epoch - 1e-9)
            parts.append(f"epoch {epoch}/{total}")
        else:
            parts.append(f"epoch {epoch}")
        if "train_loss" in record:
            parts.append(f"loss {record['train_loss']:.4f}")
        if "train_error" in record:
            parts.append(f"train err {100 * record['train_error']:.1f}%")
        if "test_error" in record:
            parts.append(f"test err {100 * record['test_error']:.1f}%")
        if self._ep_time_per_img > 0:
            parts.append(f"{self._ep_steps / self._ep_time_per_img:.0f} img/s")
        step = record.get("step", self.step)
        elapsed = time.monotonic() - self._t0
        if step and self.total_steps:
            remaining = max(0, self.total_steps - step)
            parts.append(f"eta {_eta(elapsed / step * remaining)}")
        return "  ".join(parts)
