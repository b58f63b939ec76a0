"""Result tables: the paper's table with our numbers beside the paper's.

``write_table(table, results, results_dir)`` writes ``<name>.md`` (for people) and
``<name>.json`` (for programs) atomically. Every paper row is kept in the paper's order; our
rows are bold; a smoke or shortened row says so in the row and gets no verdict, so a short run
is never presented as a reproduction. Where the files go:

* a full run (every variant at paper length) -> ``results_dir/<name>.*``, replacing anything;
* a shortened run -> ``results_dir/<name>.*`` too, unless that file holds a full run, in which
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
import datetime as _dt
import json
import math
import platform
import socket
import statistics
import subprocess
from pathlib import Path
from typing import Any, Iterable, Sequence

from nin_repro import atomic
from nin_repro.recipe import Claim, PaperRow, Table, Variant

SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class VariantResult:
    key: str  # Variant.key
    method: str  # Variant.method
    errors_pct: tuple[float, ...]  # final test error (%) per seed, same order as seeds
    seeds: tuple[int, ...]
    epochs: float  # epochs actually trained (per seed)
    planned_epochs: float  # the schedule's full length (paper length)
    steps: int
    wall_s: float  # total over seeds
    train_img_per_s: float  # mean over seeds
    schedule: str  # "paper" | "caffe" | "plateau"
    ours: tuple[str, ...]  # our choices/departures (Recipe.ours) to name in the row
    shortened: str | None  # None for a full run; else "smoke: ..." or "shortened: 12 of 260 epochs"
    run_dirs: tuple[str, ...]
    data_source: str  # Dataset.source
    num_test: int
    overrides: tuple[str, ...] = ()  # e.g. ("batch_size=256",): marked in the row
    # Per seed, the first epoch whose test error reached Table.target_error_pct (None: never).
    epochs_to_target: tuple[int | None, ...] = ()
    # Seeds that stalled on every attempt (nin_repro.health): not in errors_pct / seeds.
    stalled_seeds: tuple[int, ...] = ()
    # Tries of every seed, finished or stalled (1 per seed when nothing stalled), and one line per
    # retried or stalled seed, e.g. "seed 1: 2 attempts (attempt 0 stalled at step 84: 9/10 class maps dead ...)".
    total_attempts: int = 0
    attempt_notes: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("errors_pct", "seeds", "ours", "run_dirs", "overrides", "epochs_to_target", "stalled_seeds", "attempt_notes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "errors_pct", tuple(float(e) for e in self.errors_pct))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.errors_pct and not self.stalled_seeds:
            raise ValueError(f"variant {self.key}: no per-seed errors")
        if len(self.errors_pct) != len(self.seeds):
            raise ValueError(f"variant {self.key}: {len(self.errors_pct)} errors for {len(self.seeds)} seeds")
        if not all(math.isfinite(e) for e in self.errors_pct):
            raise ValueError(f"variant {self.key}: non-finite test error {self.errors_pct}")

    @classmethod
    def from_runs(
        cls,
        variant: Variant,
        runs: Sequence[Any],
        *,
        planned_epochs: float,
        shortened: str | None,
        data_source: str,
        overrides: Iterable[str] = (),
        epochs_to_target: Iterable[int | None] = (),
        histories: Sequence[Sequence[Any]] = (),
        schedule: str | None = None,
    ) -> "VariantResult":
        """From ``train.RunResult``s, each seed's final attempt (test_error is a fraction; stored
        here in %). A seed whose final attempt stalled is listed in ``stalled_seeds``, not
        averaged. ``histories``: per seed, the RunResults of all its attempts."""
        if not runs:
            raise ValueError(f"variant {variant.key}: no runs")
        histories = list(histories) or [[r] for r in runs]
        finished = [r for r in runs if not r.stalled]
        return cls(
            key=variant.key,
            method=variant.method,
            errors_pct=tuple(100.0 * r.test_error for r in finished),
            seeds=tuple(r.seed for r in finished),
            stalled_seeds=tuple(r.seed for r in runs if r.stalled),
            total_attempts=sum(len(h) for h in histories),
            attempt_notes=tuple(note for h in histories if (note := attempts_note(h))),
            epochs=max(r.epochs for r in runs),
            planned_epochs=float(planned_epochs),
            steps=max(r.steps for r in runs),
            wall_s=sum(r.wall_s for r in runs),
            train_img_per_s=sum(r.train_img_per_s for r in runs) / len(runs),
            schedule=schedule or variant.recipe.schedule,  # the run's (--recipe may change it)
            ours=tuple(variant.recipe.ours),
            shortened=shortened,
            run_dirs=tuple(r.run_dir for r in runs),
            data_source=data_source,
            num_test=min(r.num_test for r in runs),
            overrides=tuple(overrides),
            epochs_to_target=tuple(epochs_to_target),
        )

    @classmethod
    def from_dict(cls, d: dict) -> "VariantResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def mean(self) -> float:
        return mean_std(self.errors_pct)[0] if self.errors_pct else float("nan")

    @property
    def std(self) -> float | None:
        return mean_std(self.errors_pct)[1] if self.errors_pct else None


def attempts_note(history: Sequence[Any]) -> str | None:
    """One seed's tries in a row's words, or None when its first try finished.
    "seed 1: 2 attempts (attempt 0 stalled at step 84: 9/10 class maps dead ...)"."""
    if len(history) == 1 and not history[0].stalled:
        return None
    final = history[-1]
    stalls = "; ".join(f"attempt {r.attempt} {r.stalled}" for r in history if r.stalled)
    if final.stalled:
        return f"seed {final.seed}: stalled on all {len(history)} attempts ({stalls}); not in the mean"
    return f"seed {final.seed}: {len(history)} attempts ({stalls})"


# --------------------------------------------------------------------------- numbers


def mean_std(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); std is None for a single value."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_std of no values")
    mean = math.fsum(vals) / len(vals)
    return mean, (statistics.stdev(vals) if len(vals) > 1 else None)


def format_mean_std(values) -> str:
    """``"10.41 ± 0.12 (n=3)"``; one value: ``"10.41 (n=1, std n/a)"``; none: every seed stalled."""
    if not list(values):
        return "— (no seed finished: every seed stalled)"
    mean, std = mean_std(values)
    n = len(list(values))
    if std is None:
        return f"{mean:.2f} (n={n}, std n/a)"
    return f"{mean:.2f} ± {std:.2f} (n={n})"


def _fmt_delta(delta: float) -> str:
    s = f"{delta:+.2f}"
    return "0.00" if s in ("+0.00", "-0.00") else s


def _fmt_num(x: float) -> str:
    """Epoch counts: ``260`` when whole, else two decimals."""
    return str(int(round(x))) if abs(x - round(x)) < 1e-6 else f"{x:.2f}"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{sec:02d}s"


# --------------------------------------------------------------------------- claims


def _order_text(values: Sequence[float]) -> str:
    """``"10.41 < 10.88 < 11.59"`` with the relation that actually holds between neighbours."""
    out = f"{values[0]:.2f}"
    for a, b in zip(values, values[1:]):
        out += f" {'<' if a < b else '>' if a > b else '='} {b:.2f}"
    return out


def _claim_values(claim: Claim, means: Sequence[float]) -> tuple[bool, str]:
    """Whether ``claim`` holds for these means (in claim.variants order), and the text showing them."""
    if claim.kind == "order":
        return all(a < b for a, b in zip(means, means[1:])), _order_text(means)
    with_, without = means
    reduction = (without - with_) / without if without > 0 else float("nan")
    holds = math.isfinite(reduction) and reduction > claim.threshold
    pct = f"{100 * reduction:.1f} %" if math.isfinite(reduction) else "n/a"
    return holds, f"{without:.2f} → {with_:.2f}, {pct} relative reduction"


def evaluate_claim(claim: Claim, results: Sequence[VariantResult], table: Table | None = None, *, smoke: bool = False) -> dict:
    """A claim checked on the mean test errors of ``results``.

    ``status``: "holds" / "does not hold" on full-length runs; "n/a (smoke)" for a smoke run;
    "not checked (shortened)" when any of its rows is shortened; "not checked (not run: ...)" when
    a row is missing. ``holds`` is True/False only for "holds"/"does not hold", else None; ``ours``
    shows our means either way, ``paper`` the paper's numbers where every row has one."""
    by_key = {r.key: r for r in results}
    missing = [k for k in claim.variants if k not in by_key]
    paper_text = None
    if table is not None:
        rows = [table.paper_row(k) for k in claim.variants]
        if all(rows):
            paper_text = _claim_values(claim, [r.error for r in rows])[1]
    out = {
        "kind": claim.kind,
        "variants": list(claim.variants),
        "label": claim.label,
        "wording": claim.wording,
        "source": claim.source,
        "threshold": claim.threshold if claim.kind == "relative_reduction" else None,
        "means": {k: (by_key[k].mean if k in by_key else None) for k in claim.variants},
        "ours": None,
        "paper": paper_text,
        "holds": None,
    }
    if missing:
        out["status"] = f"not checked (not run: {', '.join(missing)})"
        return out
    chosen = [by_key[k] for k in claim.variants]
    if any(not r.errors_pct for r in chosen):
        out["status"] = "not checked (a row has no finished seed: every seed stalled)"
        return out
    holds, text = _claim_values(claim, [r.mean for r in chosen])
    out["ours"] = text
    if smoke or any((r.shortened or "").strip().lower().startswith("smoke") for r in chosen):
        out["status"] = "n/a (smoke)"
    elif any(r.shortened for r in chosen):
        out["status"] = "not checked (shortened)"
    else:
        out["status"] = "holds" if holds else "does not hold"
        out["holds"] = holds
    return out


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


# --------------------------------------------------------------------------- provenance


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    head = _git(["rev-parse", "HEAD"], repo)
    if not head:
        return "unknown"
    status = _git(["status", "--porcelain", "--untracked-files=no"], repo)
    if status is None:
        return f"{head}-unknown-state"
    return f"{head}-dirty" if status else head


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except Exception:  # noqa: BLE001 - provenance never raises
            out[pkg] = "unknown"
    return out


def _device() -> dict:
    try:
        import jax

        devs = jax.devices()
        return {"kind": devs[0].device_kind, "platform": devs[0].platform, "count": len(devs)}
    except Exception as e:  # noqa: BLE001
        return {"kind": "unknown", "platform": "unknown", "count": 0, "error": str(e)[:200]}


def provenance() -> dict:
    """Commit, device, library versions, UTC date and host of this process. Never raises."""
    out: dict[str, Any] = {}
    for name, fn in (
        ("commit", _commit),
        ("device", _device),
        ("versions", _versions),
        ("date", lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
        ("hostname", socket.gethostname),
    ):
        try:
            out[name] = fn()
        except Exception:  # noqa: BLE001
            out[name] = "unknown"
    return out


# --------------------------------------------------------------------------- the table


def _is_short(r: VariantResult, smoke: bool) -> bool:
    return smoke or r.shortened is not None


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


def _evaluate(r: VariantResult, paper: PaperRow | None, tol: float, smoke: bool) -> dict:
    if not r.errors_pct:
        return {"mean": None, "std": None, "delta": None, "within_tolerance": None}
    mean, std = mean_std(r.errors_pct)
    delta = mean - paper.error if paper is not None else None
    within = None
    if delta is not None and not _is_short(r, smoke):
        within = abs(delta) <= tol + 1e-9
    return {"mean": mean, "std": std, "delta": delta, "within_tolerance": within}


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
        rows.append([_cell(_method_cell(pr.method, pr.citation, True, r, smoke)), f"{pr.error:.2f}", *map(_cell, cells)])
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


def first_epoch_at(records: Sequence[dict], target_pct: float) -> int | None:
    """The first epoch whose recorded test error is at or below ``target_pct`` (None: never)."""
    for rec in records:
        te = rec.get("test_error")
        if te is not None and 100.0 * te <= target_pct + 1e-9:
            return int(rec["epoch"])
    return None


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


def table_json(table: Table, results: list[VariantResult], *, smoke: bool, prov: dict, partial_reason: str | None = None, figure: dict | None = None) -> dict:
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
        },
        "paper_rows": [{"method": pr.method, "error": pr.error, "citation": pr.citation, "variant": pr.variant} for pr in table.rows],
        "variants": variants,
        "claims": [evaluate_claim(c, results, table, smoke=smoke) for c in table.claims],
        "figure": figure,
        "smoke": smoke,
        "full_run": bool(results) and not smoke and not any(r.shortened for r in results),
        "partial_reason": partial_reason,
        "provenance": prov,
    }


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
) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json``; returns their paths (see the module docstring
    for which folder)."""
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
        full = bool(results) and not any(r.shortened for r in results)
        if not full and _records_full_run(results_dir / f"{table.name}.json"):
            out_dir = results_dir / "partial"
            partial_reason = f"Written to partial/ because {table.name}.json in the results folder holds a full run, which a shortened run does not replace."
    md_path, json_path = out_dir / f"{table.name}.md", out_dir / f"{table.name}.json"
    figure = _draw_figure(table, results, out_dir, smoke)
    # JSON first: it decides what a later shortened run may replace.
    atomic.write_json(json_path, table_json(table, results, smoke=smoke, prov=prov, partial_reason=partial_reason, figure=figure))
    atomic.write_text(md_path, render_markdown(table, results, smoke=smoke, prov=prov, partial_reason=partial_reason, figure=figure))
    return md_path, json_path


def load_results(json_path: Path) -> list[VariantResult]:
    """The VariantResults recorded in a table JSON written by ``write_table``."""
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    return [VariantResult.from_dict(v) for v in data["variants"]]
