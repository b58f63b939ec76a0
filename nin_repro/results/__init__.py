"""Result tables, in parts: ``stats`` (per-variant results, mean ± std, the paper's claims),
``render`` (the markdown), ``write`` (the JSON, where the files go, the figure); the provenance
recorded with every table is ``nin_repro.provenance``. The names below are the ones the rest of
the code base and the tests use as ``nin_repro.results.X``."""

from __future__ import annotations

import subprocess  # noqa: F401 - tests patch results.subprocess.run to make provenance's git calls fail

from nin_repro.provenance import provenance
from nin_repro.results.render import render_markdown
from nin_repro.results.stats import VariantResult, attempts_note, evaluate_claim, first_epoch_at, format_duration, format_mean_std, mean_std
from nin_repro.results.write import SCHEMA_VERSION, load_results, table_json, write_table

__all__ = [
    "SCHEMA_VERSION",
    "VariantResult",
    "attempts_note",
    "evaluate_claim",
    "first_epoch_at",
    "format_duration",
    "format_mean_std",
    "load_results",
    "mean_std",
    "provenance",
    "render_markdown",
    "table_json",
    "write_table",
]
