"""Shared fixtures: one smoke run of `nin-repro cifar10` for every test that reads its output."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile

import pytest

# One persistent XLA compilation cache for the whole session (and the subprocesses tests start):
# many tests compile the same small programs; measured 480 s -> 416 s for the suite on 2 cores.
# Set before jax is imported; a fresh folder, so nothing carries over between sessions.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="nin-repro-test-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


@pytest.fixture(scope="session")
def smoke_cifar10(tmp_path_factory):
    """Runs `nin-repro cifar10 --smoke` once; returns its folders and the table JSON."""
    from nin_repro.cli import main

    root = tmp_path_factory.mktemp("smoke")
    results, runs = root / "results", root / "runs"
    code = main(["cifar10", "--smoke", "--results-dir", str(results), "--workdir", str(runs)])
    assert code == 0
    table = json.loads((results / "smoke" / "cifar10.json").read_text())
    return {"root": root, "results": results, "runs": runs, "table": table}


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


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures saved during the test (see record_figures)."""
    return record_figures(monkeypatch)


def panels(fig) -> dict[tuple[int, int], object]:
    """A figure's grid panels by (row, column); colour bars and other free axes left out."""
    out = {}
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None:
            out[(spec.rowspan.start, spec.colspan.start)] = ax
    return out
