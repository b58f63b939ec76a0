"""The markdown of a result table: the paper's rows with ours beside them, claims, epochs to
target, figure link, our choices, notes, provenance and per-variant details."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from nin_repro.recipe import PaperRow, Table
from nin_repro.results.stats import VariantResult, _evaluate, _is_short, evaluate_claim, format_duration, format_mean_std


def _fmt_delta(delta: float) -> str:
    s = f"{delta:+.2f}"
    return "0.00" if s in ("+0.00", "-0.00") else s


def _fmt_num(x: float) -> str:
    """Epoch counts: ``260`` when whole, else two decimals."""
    return str(int(round(x))) if abs(x - round(x)) < 1e-6 else f"{x:.2f}"


def _claims_md(table: Table, results: Sequence[VariantResult], smoke: bool) -> list[str]:
    if not table.claims:
        return []
    lines = ["## Claims", ""]
    for claim in table.claims:
        ev = evaluate_claim(claim, results, table, smoke=smoke)
        detail = "; ".join(x for x in (f"ours: {ev['ours']}" if ev["ours"] else "", f"paper: {ev['paper']}" if ev["paper"] else "") if x)
        line = f"- **{_cell(claim.label)}: {ev['status']}**" + (f" ({detail})" if detail else "")
        said = f"“{claim.wording}”" + (f" — {claim.source}" if claim.source else "")
        lines.append(f"{line}. Paper: {said}")
    lines += [
        "",
        "Claims are checked on the mean test error over seeds, with no significance test [ours]; smoke and shortened runs are not checked.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- the table


def _short_label(r: VariantResult, smoke: bool) -> str | None:
    """Text naming a smoke/shortened run in its row, or None for a full run."""
    if r.shortened is not None:
        text = r.shortened.strip()
        low = text.lower()
        if smoke and not low.startswith("smoke"):
            return f"smoke: {text}"
        if low.startswith(("smoke", "shortened")):
            return text
        return f"shortened: {text}"
    return "smoke" if smoke else None


def _verdict_kind(r: VariantResult, smoke: bool) -> str:
    return "smoke" if smoke or (r.shortened or "").strip().lower().startswith("smoke") else "shortened"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _method_cell(method: str, citation: str, ours: bool, r: VariantResult | None, smoke: bool) -> str:
    name = f"**{method}**" if ours else method
    parts = [name]
    if citation:
        parts.append(citation)
    text = " ".join(parts)
    notes = []
    if r is not None:
        label = _short_label(r, smoke)
        if label:
            notes.append(label)
        if r.overrides:
            notes.append("overrides: " + ", ".join(r.overrides))
        notes.extend(r.attempt_notes)
    if notes:
        text += " (" + "; ".join(notes) + ")"
    return text


def _run_cell(r: VariantResult) -> str:
    seeds = ",".join(str(s) for s in r.seeds)
    return f"{r.schedule}, {_fmt_num(r.epochs)}/{_fmt_num(r.planned_epochs)} epochs, seeds {seeds}"


def _our_cells(r: VariantResult | None, paper: PaperRow | None, tol: float, smoke: bool) -> list[str]:
    """Ours | Δ | Within | Run."""
    if r is None:
        return ["not run", "", "", ""]
    ev = _evaluate(r, paper, tol, smoke)
    ours = format_mean_std(r.errors_pct)
    n_seeds = len(r.seeds) + len(r.stalled_seeds)
    if r.total_attempts > n_seeds or r.stalled_seeds:
        ours += f"; {r.total_attempts} attempts for {n_seeds} seeds"
        if r.stalled_seeds:
            ours += f", seed(s) {', '.join(map(str, r.stalled_seeds))} stalled every time"
    if paper is None:
        delta, within = "—", "—"
    elif _is_short(r, smoke):
        na = f"n/a ({_verdict_kind(r, smoke)})"
        delta, within = na, na
    else:
        delta = _fmt_delta(ev["delta"])
        within = "yes" if ev["within_tolerance"] else "no"
    return [ours, delta, within, _run_cell(r)]


def _rows(table: Table, by_key: dict[str, VariantResult], smoke: bool) -> list[list[str]]:
    tol = table.tolerance_pp
    rows = []
    shown: set[str] = set()
    for pr in table.rows:
        if pr.variant is None:
            rows.append([_cell(_method_cell(pr.method, pr.citation, False, None, smoke)), f"{pr.error:.2f}", "", "", "", ""])
            continue
        r = by_key.get(pr.variant)
        shown.add(pr.variant)
        cells = _our_cells(r, pr, tol, smoke)
        citation = pr.citation
        baseline = next((v for v in table.variants if v.key == pr.variant and v.baseline), None)
        if baseline is not None:  # a baseline re-run by us: the row says whose recipe it is
            citation += f"; ours: {baseline.method}"
            cells[0] = "not run (run with --baselines)" if r is None else cells[0]
        rows.append([_cell(_method_cell(pr.method, citation, True, r, smoke)), f"{pr.error:.2f}", *map(_cell, cells)])
    # Variants with no paper row (a demo, an ablation): their own rows, no paper number.
    extra_keys = [v.key for v in table.variants if v.key not in shown]
    extra_keys += [k for k in by_key if k not in shown and k not in extra_keys]
    methods = {v.key: v.method for v in table.variants}
    for key in extra_keys:
        r = by_key.get(key)
        method = r.method if r is not None else methods[key]
        cells = _our_cells(r, None, tol, smoke)
        rows.append([_cell(_method_cell(method, "", True, r, smoke)), "—", *map(_cell, cells)])
    return rows


def _provenance_md(prov: dict) -> list[str]:
    dev = prov.get("device", {})
    if isinstance(dev, dict):
        dev_s = f"{dev.get('kind', '?')} ({dev.get('platform', '?')}, {dev.get('count', '?')} device(s))"
    else:
        dev_s = str(dev)
    vers = prov.get("versions", {})
    vers_s = ", ".join(f"{k} {v}" for k, v in vers.items()) if isinstance(vers, dict) else str(vers)
    return [
        f"- Commit: `{prov.get('commit', 'unknown')}`",
        f"- Device: {dev_s}",
        f"- Versions: {vers_s}",
        f"- Date (UTC): {prov.get('date', 'unknown')}",
        f"- Host: {prov.get('hostname', 'unknown')}",
    ]


def _variant_md(r: VariantResult, smoke: bool) -> list[str]:
    per_seed = ", ".join(f"seed {s}: {e:.2f}%" for s, e in zip(r.seeds, r.errors_pct))
    label = _short_label(r, smoke)
    lines = [
        f"**{r.method}** (`{r.key}`){' — ' + label if label else ''}",
        "",
        f"- Data: {r.data_source}; test error on {r.num_test} test images",
        f"- Seeds: {', '.join(map(str, r.seeds))}; per-seed test error: {per_seed}",
        f"- Epochs trained / planned: {_fmt_num(r.epochs)} / {_fmt_num(r.planned_epochs)} (schedule: {r.schedule}); steps per seed: {r.steps}",
        f"- Wall time (all seeds): {format_duration(r.wall_s)}; training throughput: {r.train_img_per_s:.0f} img/s (mean over seeds)",
        f"- Overrides: {', '.join(r.overrides) if r.overrides else 'none'}",
        f"- Attempts: {r.total_attempts or len(r.seeds)} for {len(r.seeds) + len(r.stalled_seeds)} seed(s)"
        + (" — " + "; ".join(r.attempt_notes) if r.attempt_notes else " (no seed stalled)"),
        "- Run folders: " + ", ".join(f"`{d}`" for d in r.run_dirs),
        "",
    ]
    return lines


def _target_md(table: Table, results: Sequence[VariantResult]) -> list[str]:
    if table.target_error_pct is None:
        return []
    lines = [f"## Epochs to reach {table.target_error_pct:g} % test error", "", "| Method | Per seed | Mean |", "|---|---|---|"]
    for r in results:
        reached = [e for e in r.epochs_to_target if e is not None]
        per_seed = ", ".join(f"seed {s}: {e if e is not None else 'not reached'}" for s, e in zip(r.seeds, r.epochs_to_target)) or "not recorded"
        mean = f"{sum(reached) / len(reached):.1f}" + ("" if len(reached) == len(r.seeds) else f" ({len(reached)} of {len(r.seeds)} seeds reached it)") if reached else "—"
        lines.append(f"| {_cell(r.method)} | {per_seed} | {mean} |")
    return lines + ["", "Test error is measured after every epoch; the first epoch at or below the target counts.", ""]


def _figure_md(table: Table, figure: dict | None) -> list[str]:
    if not table.figure or figure is None:
        return []
    if figure.get("path"):
        name = Path(figure["path"]).name
        return ["## Figure", "", f"![{_cell(table.title)}]({name})", "", f"{figure.get('caption', '')}".strip(), ""]
    return ["## Figure", "", f"Figure not drawn: {figure.get('error', 'unknown error')}", ""]


def render_markdown(table: Table, results: list[VariantResult], *, smoke: bool, prov: dict, partial_reason: str | None = None, figure: dict | None = None) -> str:
    by_key = {r.key: r for r in results}
    tol = table.tolerance_pp
    lines = [f"# {table.title}", ""]
    if smoke:
        lines += ["> **Smoke run**: checks that the pipeline runs end to end; its numbers are not a reproduction.", ""]
    elif any(r.shortened for r in results):
        lines += ["> **Shortened run**: rows marked shortened are not reproductions of the paper's numbers.", ""]
    if partial_reason:
        lines += [f"> {partial_reason}", ""]
    lines += [f"Paper numbers: {table.source}", ""]
    header = [
        "Method",
        "Paper error (%)",
        "Ours (mean ± std, n)",
        "Δ (ours − paper, pp)",
        f"Within ±{tol:g} pp?" if table.rows else "Within tolerance?",
        "Run (schedule, epochs, seeds)",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for row in _rows(table, by_key, smoke):
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Test error in %, final parameters, mean ± sample std over seeds. Our rows are in bold. "
        + (f"“Within ±{tol:g} pp” is our tolerance for calling a row reproduced [ours]." if table.rows else "No paper number to compare with."),
        "",
    ]
    lines += _claims_md(table, results, smoke)
    lines += _target_md(table, results)
    lines += _figure_md(table, figure)
    if any(r.ours for r in results):
        lines += ["## Our choices", ""]
        for r in results:
            if not r.ours:
                continue
            lines.append(f"- **{r.method}**:")
            for item in r.ours:
                item = item.strip()
                lines.append(f"  - {item if item.startswith('[ours]') else '[ours] ' + item}")
        lines.append("")
    if table.notes:
        lines += ["## Notes", ""]
        lines += [f"- {n}" for n in table.notes]
        lines.append("")
    lines += ["## Provenance", "", *_provenance_md(prov), ""]
    for r in results:
        lines += _variant_md(r, smoke)
    return "\n".join(lines).rstrip() + "\n"
