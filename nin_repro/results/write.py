"""Result tables: the paper's table with our numbers beside the paper's.

``write_table(table, results, results_dir)`` writes ``<name>.md`` (for people) and
``<name>.json`` (for programs) atomically. Every paper row is kept in the paper's order; our
rows are bold; a smoke or shortened row says so in the row and gets no verdict, so a short run
is never presented as a reproduction. Where the files go:

* a full run (every variant at paper length) -> ``results_dir/<name>.*``, replacing anything;
* a shortened run, or a run of some of the rows (``--rows``) -> ``results_dir/<name>.*`` too, unless that file holds a full run, in which
  case ``results_dir/partial/<name>.*`` (a full table is never overwritten by a short one);
* ``smoke=True`` -> ``results_dir/smoke/<name>.*`` only.

A table without paper rows (a demo) is written the same way: each variant gets its own row.

``Table.claims`` (statements about several rows, e.g. "GAP < FC + Dropout < FC") are checked on
our means and listed under the table, and stored under ``"claims"`` in the JSON; smoke and
shortened runs get no verdict. ``Table.figure`` is drawn (``nin_repro.figures``) next to the
markdown, which links it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nin_repro import atomic
from nin_repro.provenance import provenance
from nin_repro.recipe import Table
from nin_repro.results.render import render_markdown
from nin_repro.results.stats import VariantResult, _evaluate, _is_short, evaluate_claim

SCHEMA_VERSION = 1


def table_json(
    table: Table, results: list[VariantResult], *, smoke: bool, prov: dict, partial_reason: str | None = None, figure: dict | None = None, some_rows: bool = False
) -> dict:
    variants = []
    for r in results:
        paper = table.paper_row(r.key)
        ev = _evaluate(r, paper, table.tolerance_pp, smoke)
        variants.append(
            {
                **dataclasses.asdict(r),
                "paper_error": paper.error if paper else None,
                **ev,
                "full_run": not _is_short(r, smoke),
            }
        )
    return {
        "schema": SCHEMA_VERSION,
        "table": {
            "name": table.name,
            "title": table.title,
            "source": table.source,
            "tolerance_pp": table.tolerance_pp,
            "notes": list(table.notes),
            "target_error_pct": table.target_error_pct,
            "scale": table.scale,
        },
        "paper_rows": [{"method": pr.method, "error": pr.error, "citation": pr.citation, "variant": pr.variant} for pr in table.rows],
        "variants": variants,
        "claims": [evaluate_claim(c, results, table, smoke=smoke) for c in table.claims],
        "figure": figure,
        "smoke": smoke,
        "full_run": not smoke and _is_full(results, some_rows),
        "partial_reason": partial_reason,
        "provenance": prov,
    }


def _is_full(results: list[VariantResult], some_rows: bool) -> bool:
    """Every variant run at paper length. A run of some of the rows (``--rows``) is not full: it
    never replaces a full table (beside one it goes to partial/)."""
    return bool(results) and not some_rows and not any(r.shortened for r in results)


def _records_full_run(path: Path) -> bool:
    """Whether the JSON at ``path`` is a full run. An unreadable file counts as full: it is
    kept (a short run goes to partial/), only a full run replaces it."""
    if not path.exists():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if "full_run" in data:
            return bool(data["full_run"])
        vs = data.get("variants", [])
        return bool(vs) and not data.get("smoke") and all(v.get("shortened") is None for v in vs)
    except (OSError, ValueError, AttributeError, TypeError):
        return True


def _draw_figure(table: Table, results: list[VariantResult], out_dir: Path, smoke: bool) -> dict | None:
    """The table's figure (``Table.figure``) next to its markdown. A figure that cannot be drawn
    (a run folder gone, no metrics) is reported in the table instead of losing the table."""
    if not table.figure:
        return None
    from nin_repro import figures

    caption = figures.table_figure_caption(table, results, smoke=smoke)
    try:
        path = figures.write_table_figure(table, results, out_dir, smoke=smoke)
    except (OSError, ValueError, KeyError) as e:
        return {"kind": table.figure, "path": None, "caption": caption, "error": f"{type(e).__name__}: {e}"}
    return {"kind": table.figure, "path": str(path), "caption": caption, "error": None}


def write_table(
    table: Table,
    results: list[VariantResult],
    results_dir: Path,
    *,
    smoke: bool = False,
    prov: dict | None = None,
    some_rows: bool = False,
) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json``; returns their paths (see the module docstring
    for which folder). ``some_rows``: only some variants were asked for (``--rows``); the others
    show as not run."""
    results = list(results)
    keys = [r.key for r in results]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate variant results: {keys}")
    results_dir = Path(results_dir)
    prov = provenance() if prov is None else prov
    partial_reason = None
    if smoke:
        out_dir = results_dir / "smoke"
    else:
        out_dir = results_dir
        full = _is_full(results, some_rows)
        if not full and _records_full_run(results_dir / f"{table.name}.json"):
            out_dir = results_dir / "partial"
            partial_reason = (
                f"Written to partial/ because {table.name}.json in the results folder holds a full run, which a shortened run, or a run of some rows (--rows), does not replace."
            )
    md_path, json_path = out_dir / f"{table.name}.md", out_dir / f"{table.name}.json"
    figure = _draw_figure(table, results, out_dir, smoke)
    # JSON first: it decides what a later shortened run may replace.
    atomic.write_json(json_path, table_json(table, results, smoke=smoke, prov=prov, partial_reason=partial_reason, figure=figure, some_rows=some_rows))
    atomic.write_text(md_path, render_markdown(table, results, smoke=smoke, prov=prov, partial_reason=partial_reason, figure=figure))
    return md_path, json_path


def load_results(json_path: Path) -> list[VariantResult]:
    """The VariantResults recorded in a table JSON written by ``write_table``."""
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    return [VariantResult.from_dict(v) for v in data["variants"]]
