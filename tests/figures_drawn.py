"""What nin_repro.figures drew: the matplotlib Figures saved during a test, and their panels."""

from __future__ import annotations

import pytest


def record_figures(mp: pytest.MonkeyPatch) -> list:
    """Every matplotlib Figure saved from now on (nin_repro.figures draws on Figure objects and
    saves them once), in order, so a test can check what is drawn and not only that a PNG exists."""
    from matplotlib.figure import Figure

    figures, savefig = [], Figure.savefig

    def recording_savefig(self, *a, **kw):
        figures.append(self)
        return savefig(self, *a, **kw)

    mp.setattr(Figure, "savefig", recording_savefig)
    return figures


def panels(fig) -> dict[tuple[int, int], object]:
    """A figure's grid panels by (row, column); colour bars and other free axes left out."""
    out = {}
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None:
            out[(spec.rowspan.start, spec.colspan.start)] = ax
    return out
