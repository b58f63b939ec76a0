"""Figures: training and test error per epoch (the paper's Fig. 3), the analysis figures
(Figure 4 class maps, class activation maps) and training curves of saved runs.

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


class MetricsWarning(UserWarning):
    """Lines of a metrics.jsonl that are not epoch records (cut off, non-numeric) were skipped."""


# Fields of an epoch record that must be numbers when present (None: not evaluated that epoch).
_NUMERIC = ("step", "lr", "train_loss", "train_error", "test_error", "test_loss", "wall_s")


def _bad_record(record) -> str | None:
    """Why a parsed line is not an epoch record, or None if it is one."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    epoch = record.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or not math.isfinite(epoch):
        return f"epoch is {epoch!r}"
    for field in _NUMERIC:
        value = record.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{field} is {value!r}"
    return None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run folder's metrics.jsonl. Lines that are not epoch records (a
    line cut off by a crash, a non-numeric value) are skipped with one MetricsWarning per file."""
    import warnings

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    records, skipped = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            why = "not JSON (cut off?)"
        else:
            why = _bad_record(record)
        if why is None:
            records.append(record)
        else:
            skipped.append(f"line {number}: {why}")
    if skipped:
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        warnings.warn(f"skipped {len(skipped)} damaged line(s) of {path} ({skipped[0][:120]}{more})", MetricsWarning, stacklevel=2)
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


# --------------------------------------------------------------------------- analysis figures


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | Path, caption: str) -> Path:
    if caption:
        fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=8, wrap=True, style="italic")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    out_png = Path(out_png)
    atomic.write_bytes(out_png, buf.getvalue())
    return out_png


def _show_image(ax, image_HWC) -> None:
    if image_HWC.shape[-1] == 1:
        ax.imshow(image_HWC[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image_HWC)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_figure4(images_NHWC, maps_NHWK, true_N, pred_N, class_names: Sequence[str], out_png, title: str, caption: str) -> Path:
    """The paper's Figure 4: each test image beside its class maps (upsampled to the input, the
    top activations only), the true class's map framed in green, the predicted one named."""
    n, k = len(images_NHWC), maps_NHWK.shape[-1]
    fig = _new_figure(1.0 * (k + 1) + 1.2, 1.0 * n + 1.3)
    grid = fig.add_gridspec(n, k + 1, left=0.1, right=0.9, top=1 - 0.55 / (n + 1.3), bottom=0.75 / (n + 1.3), wspace=0.06, hspace=0.1)
    im = None
    for i in range(n):
        row_max = float(maps_NHWK[i].max()) or 1.0
        ax = fig.add_subplot(grid[i, 0])
        _show_image(ax, images_NHWC[i])
        ax.set_ylabel(f"true {class_names[true_N[i]]}\npred {class_names[pred_N[i]]}", fontsize=7, rotation=0, ha="right", va="center")
        if i == 0:
            ax.set_title("image", fontsize=8)
        for c in range(k):
            ax = fig.add_subplot(grid[i, c + 1])
            im = ax.imshow(maps_NHWK[i, :, :, c] / row_max, cmap="inferno", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(class_names[c], fontsize=7)
            if c == true_N[i]:
                for spine in ax.spines.values():
                    spine.set_edgecolor("limegreen")
                    spine.set_linewidth(2.5)
    fig.suptitle(title, fontsize=10)
    if im is not None:
        cax = fig.add_axes((0.92, 0.25, 0.015, 0.5))
        fig.colorbar(im, cax=cax).set_label("activation / image's max (top 10 % shown)", fontsize=7)
    return _save(fig, out_png, caption + " Green frame: true class.")


def draw_cam(images_NHWC, cams_NHWK, probs_NK, class_names: Sequence[str], out_png, title: str, caption: str) -> Path:
    """Class activation maps: each image, then its top-1 and top-2 classes' CAMs overlaid as a
    heat map (each map scaled to its own min..max)."""
    import numpy as np

    n = len(images_NHWC)
    fig = _new_figure(6.4, 1.9 * n + 1.0)
    grid = fig.add_gridspec(n, 3, left=0.04, right=0.86, top=1 - 0.85 / (1.9 * n + 1.0), bottom=0.6 / (1.9 * n + 1.0), wspace=0.08, hspace=0.3)
    im = None
    for i in range(n):
        order = np.argsort(-probs_NK[i])[:2]
        ax = fig.add_subplot(grid[i, 0])
        _show_image(ax, images_NHWC[i])
        ax.set_title("image", fontsize=8)
        for j, c in enumerate(order):
            m = cams_NHWK[i, :, :, c]
            span = float(m.max() - m.min()) or 1.0
            ax = fig.add_subplot(grid[i, j + 1])
            _show_image(ax, images_NHWC[i])
            im = ax.imshow((m - m.min()) / span, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
            ax.set_title(f"top-{j + 1}: {class_names[c]} (p {probs_NK[i, c]:.2g})", fontsize=8)
    fig.suptitle(title, fontsize=10)
    if im is not None:
        cax = fig.add_axes((0.89, 0.25, 0.02, 0.5))
        fig.colorbar(im, cax=cax).set_label("CAM (scaled to the map's range)", fontsize=7)
    return _save(fig, out_png, caption)


def plot_runs(run_dirs: Sequence[str | Path], labels: Sequence[str], out_png, caption: str = "") -> Path:
    """Training loss, test error and learning rate per epoch, one colour per run."""
    if not run_dirs:
        raise ValueError("plot_runs: no runs to plot")
    fig = _new_figure(13, 4.4)
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    for i, (d, label) in enumerate(zip(run_dirs, labels)):
        recs = read_metrics(d)
        color = f"C{i % 10}"
        for ax, field, scale in ((axes[0], "train_loss", 1.0), (axes[1], "test_error", 100.0), (axes[2], "lr", 1.0)):
            pts = [(r["epoch"], scale * float(r[field])) for r in recs if r.get(field) is not None]
            if pts:
                ax.plot(*zip(*pts), color=color, linewidth=1.5, marker="." if len(pts) < 30 else None, label=label)
    for ax, name in zip(axes, ("training loss", "test error (%)", "learning rate")):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.06 if caption else 0, 1, 1))
    return _save(fig, out_png, caption)
