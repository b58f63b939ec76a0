"""Figures drawn from run folders: training and test error per epoch (the paper's Fig. 3).

``plot_error_curves({label: run_dir(s)}, out_png, title, caption)`` reads each run's
``metrics.jsonl`` (one line per epoch with ``train_error`` and, on evaluated epochs,
``test_error``, both fractions) and writes a PNG atomically. Several run folders under one label
(the seeds of a variant) are averaged epoch by epoch. matplotlib's Agg canvas is used directly,
so no display and no global pyplot state are involved.

``write_table_figure(table, results, out_dir, smoke=...)`` draws the figure a ``Table`` asks
for (``Table.figure``); ``results.write_table`` calls it.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

from nin_repro import atomic

FIGURES = ("error_curves",)
SMOKE_CAPTION = "Untrained smoke model on synthetic data — not evidence."


def figure_filename(table_name: str) -> str:
    return f"{table_name}.png"


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run folder's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            records.append(json.loads(line))
    return records


def _curve(records: list[dict], field: str) -> dict[int, float]:
    return {int(r["epoch"]): 100.0 * float(r[field]) for r in records if r.get(field) is not None and math.isfinite(float(r[field]))}


def _mean_curve(curves: list[dict[int, float]]) -> tuple[list[int], list[float]]:
    """Mean over runs at the epochs every run has."""
    if not curves:
        return [], []
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    return epochs, [sum(c[e] for c in curves) / len(curves) for e in epochs]


def plot_error_curves(
    run_dirs_by_label: Mapping[str, str | Path | Sequence[str | Path]],
    out_png: str | Path,
    title: str,
    caption: str = "",
) -> Path:
    """Training (dashed) and test (solid) error in % per epoch, one colour per label; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not run_dirs_by_label:
        raise ValueError("plot_error_curves: no runs to plot")
    fig = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i}" for i in range(10)]
    for i, (label, dirs) in enumerate(run_dirs_by_label.items()):
        dirs = [dirs] if isinstance(dirs, (str, Path)) else list(dirs)
        if not dirs:
            raise ValueError(f"plot_error_curves: no run folder for {label!r}")
        runs = [read_metrics(d) for d in dirs]
        n = f" (mean of {len(runs)} runs)" if len(runs) > 1 else ""
        color = colors[i % len(colors)]
        for field, style, what in (("test_error", "-", "test"), ("train_error", "--", "training")):
            epochs, values = _mean_curve([_curve(r, field) for r in runs])
            if epochs:
                ax.plot(epochs, values, style, color=color, linewidth=1.6, marker="." if len(epochs) < 30 else None, label=f"{label}: {what} error{n}")
    if not ax.lines:
        raise ValueError("plot_error_curves: the metrics files hold no training or test error")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    if caption:
        fig.text(0.5, 0.015, caption, ha="center", va="bottom", fontsize=9, wrap=True, style="italic")
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    else:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    out_png = Path(out_png)
    atomic.write_bytes(out_png, buf.getvalue())
    return out_png


def table_figure_caption(table, results, *, smoke: bool) -> str:
    if smoke:
        return SMOKE_CAPTION
    shortened = [r for r in results if r.shortened]
    text = "Solid: test error; dashed: training error."
    if shortened:
        text += f" Shortened run ({shortened[0].shortened}) — not the paper's length."
    return text


def write_table_figure(table, results, out_dir: str | Path, *, smoke: bool) -> Path | None:
    """Draw ``table.figure`` from the run folders of ``results`` into ``out_dir/<table>.png``;
    None when the table asks for no figure."""
    if not table.figure:
        return None
    if table.figure not in FIGURES:
        raise ValueError(f"table {table.name}: unknown figure {table.figure!r}; known: {', '.join(FIGURES)}")
    runs = {r.method: list(r.run_dirs) for r in results}
    return plot_error_curves(runs, Path(out_dir) / figure_filename(table.name), table.title, table_figure_caption(table, results, smoke=smoke))
