"""`nin-repro report`: rebuild ``<results>/README.md`` from every ``<results>/*.json`` table.

One line per paper row we ran (table, method, paper, ours, delta, within tolerance), links to
the tables and figures, total wall time and the devices used. Every table command calls it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nin_repro import atomic
from nin_repro.results.stats import format_duration, format_mean_std

VARIANT_FIELDS = {"method": str, "errors_pct": list, "seeds": list, "epochs": (int, float), "planned_epochs": (int, float)}


def table_problem(data: dict) -> str | None:
    """Why a results JSON that looks like a table cannot be summarised (None: it can)."""
    table = data.get("table")
    if not isinstance(table, dict) or not isinstance(table.get("title"), str):
        return "'table' has no title"
    if not isinstance(data.get("variants"), list) or not data["variants"]:
        return "no variants"
    for v in data["variants"]:
        if not isinstance(v, dict):
            return "a variant is not an object"
        for name, kind in VARIANT_FIELDS.items():
            if not isinstance(v.get(name), kind):
                return f"a variant's {name!r} is missing or mistyped"
        if not all(isinstance(e, (int, float)) for e in v["errors_pct"]):
            return "a variant's errors_pct holds a non-number"
    return None


def _load_tables(results_dir: Path) -> list[tuple[Path, dict]]:
    """The table records in ``results_dir``; a damaged or foreign one is skipped with a warning."""
    tables = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # our writes are atomic: a file cut short was damaged afterwards
            print(f"warning: {path} skipped in the summary: not readable JSON ({' '.join(str(e).split())})", file=sys.stderr)
            continue
        if isinstance(data, dict) and "table" in data and "variants" in data:
            problem = table_problem(data)
            if problem:
                print(f"warning: {path} skipped in the summary: {problem} (rerun its table command to rewrite it)", file=sys.stderr)
                continue
            tables.append((path, data))
    return tables


ANALYSIS_TITLES = {
    "figure4": "Figure 4: class maps",
    "cam": "Class activation maps",
    "gap_claims": "GAP vs FC: the claims measured",
    "init-study": "Init study: why the paper's MNIST recipe stalls on real digits",
    "init-study-signal": "Init study, signal scale at initialisation of every variant (nothing trained)",
    "curves": "Training curves",
    "baselines-real-digits": "Maxout baselines on the shipped real digits (issue 19, section 5; shortened runs)",
    "baselines-real-digits-steps": "Maxout mnist.yaml on the shipped real digits: does the yaml's init leave ln 10? (shortened run)",
    "baselines-real-digits-124": "Maxout mnist.yaml on the shipped real digits, the first 124 steps (shortened run)",
    "baselines-real-digits-init": "Maxout baselines: the class-score spread at the yamls' init on the shipped digits (nothing trained)",
    "baselines-real-digits-long": "Maxout mnist.yaml at the yaml's init on the shipped real digits, 200 epochs (6,200 steps), one seed (shortened run)",
    "baselines-real-digits-long-seeds12": "Maxout mnist.yaml at the yaml's init on the shipped real digits, 100 epochs, seeds 1 and 2 (shortened runs)",
    "baselines-real-digits-stochastic-rgb32": "Stochastic pooling, the SVHN and CIFAR-10 nets on the shipped digits as 32x32x3, 10 epochs, 3 seeds (shortened runs)",
}


def _json_records(results_dir: Path):
    """(path, parsed JSON) of every readable ``results_dir/*.json``; unreadable ones are skipped
    (tables warn about theirs elsewhere)."""
    for path in sorted(results_dir.glob("*.json")):
        try:
            yield path, json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue


def _load_analyses(results_dir: Path) -> list[tuple[Path, str, str]]:
    """(path, analysis name, caption) of each analysis record (`figure4`, `cam`, `gap-claims`)."""
    out = []
    for path, data in _json_records(results_dir):
        if isinstance(data, dict) and "analysis" in data:
            # A figure without a page of its own (`plot`) links to the figure itself.
            has_page = path.with_suffix(".md").is_file() or not isinstance(data.get("figure"), str)
            page = path if has_page else path.with_name(str(data["figure"]))
            out.append((page, str(data["analysis"]), str(data.get("caption", ""))))
        elif isinstance(data, dict) and "study" in data:  # init-study: not a table, linked with the analyses
            out.append((path, str(data["study"]), str(data.get("what", ""))))
    return out


def _load_checks(results_dir: Path) -> list[tuple[Path, str, str]]:
    """(path, name, caption) of each device check record (`check-gpu`), with its device and what it finished."""
    out = []
    for path, data in _json_records(results_dir):
        if isinstance(data, dict) and isinstance(data.get("check"), str) and isinstance(data.get("parts"), list):
            prov = data.get("provenance")
            dev = prov.get("device", {}) if isinstance(prov, dict) else {}
            parts = ", ".join(f"{p.get('name')} {p.get('status')}" for p in data["parts"] if isinstance(p, dict))
            kind = dev.get("kind", "?") if isinstance(dev, dict) else "?"
            out.append((path, data["check"], f"{kind}{' (shortened plan)' if data.get('shortened') else ''}: {parts}"))
    return out


def _status(v: dict, smoke: bool, scale: str = "paper") -> str:
    if smoke or (v.get("shortened") or "").startswith("smoke"):
        return "smoke"
    if scale == "demo":  # a demo-scale table: whatever its length, not a reproduction
        return "demo"
    return "shortened" if v.get("shortened") else "full"


def render_report(results_dir: Path) -> str:
    tables = _load_tables(results_dir)
    lines = [
        "# nin-repro results",
        "",
        "Rebuilt by `nin-repro report` from the tables in this folder. Errors in %, final parameters, "
        "mean ± sample std over seeds. Only full rows are reproductions; demo (demo-scale model on the shipped digits), "
        "shortened and smoke rows are marked.",
        "",
        "| Table | Method | Paper | Ours | Δ (pp) | Within tolerance | Run |",
        "|---|---|---|---|---|---|---|",
    ]
    wall, devices = 0.0, set()
    for path, data in tables:
        table, smoke = data["table"], bool(data.get("smoke"))
        link = f"[{table['title']}]({path.with_suffix('.md').name})"
        dev = data.get("provenance", {}).get("device", {})
        if dev:
            devices.add(f"{dev.get('kind', '?')} x{dev.get('count', '?')}")
        for v in data["variants"]:
            wall += float(v.get("wall_s", 0.0))
            paper = v.get("paper_error")
            delta = v.get("delta")
            within = v.get("within_tolerance")
            status = _status(v, smoke, table.get("scale", "paper"))
            lines.append(
                "| "
                + " | ".join(
                    [
                        link,
                        v["method"],
                        f"{paper:.2f}" if paper is not None else "—",
                        format_mean_std(v["errors_pct"]),
                        f"{delta:+.2f}" if (delta is not None and status == "full") else "—",
                        {True: "yes", False: "no"}.get(within, "n/a"),
                        f"{status}, {v['epochs']:g}/{v['planned_epochs']:g} epochs, {len(v['seeds'])} seed(s)",
                    ]
                )
                + " |"
            )
    if not tables:
        lines.append("| — | no table has been run yet | | | | | |")
    analyses = _load_analyses(results_dir)
    if analyses:
        lines += ["", "## Analyses (why GAP works)", ""]
        lines += [f"- [{ANALYSIS_TITLES.get(name, name)}]({path.name if path.suffix == '.png' else path.with_suffix('.md').name}): {caption}" for path, name, caption in analyses]
    checks = _load_checks(results_dir)
    if checks:
        lines += ["", "## Device checks", ""] + [f"- [{name}]({path.with_suffix('.md').name}): {caption}" for path, name, caption in checks]
    figures = sorted(p.name for p in results_dir.glob("*.png"))
    lines += ["", f"Total wall time: {format_duration(wall)}. Devices: {', '.join(sorted(devices)) or 'n/a'}."]
    if figures:
        lines += ["", "## Figures", ""] + [f"- [{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def write_report(results_dir: str | Path) -> Path:
    results_dir = Path(results_dir)
    out = results_dir / "README.md"
    atomic.write_text(out, render_report(results_dir))
    return out
