"""Statistics of a table's rows: per-variant results over seeds, mean ± std, and the paper's
claims checked on our means."""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any, Iterable, Sequence

from nin_repro.recipe import Claim, PaperRow, Table, Variant


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


# --------------------------------------------------------------------------- rows


def _is_short(r: VariantResult, smoke: bool) -> bool:
    return smoke or r.shortened is not None


def _evaluate(r: VariantResult, paper: PaperRow | None, tol: float, smoke: bool) -> dict:
    if not r.errors_pct:
        return {"mean": None, "std": None, "delta": None, "within_tolerance": None}
    mean, std = mean_std(r.errors_pct)
    delta = mean - paper.error if paper is not None else None
    within = None
    if delta is not None and not _is_short(r, smoke):
        within = abs(delta) <= tol + 1e-9
    return {"mean": mean, "std": std, "delta": delta, "within_tolerance": within}


def first_epoch_at(records: Sequence[dict], target_pct: float) -> int | None:
    """The first epoch whose recorded test error is at or below ``target_pct`` (None: never)."""
    for rec in records:
        te = rec.get("test_error")
        if te is not None and 100.0 * te <= target_pct + 1e-9:
            return int(rec["epoch"])
    return None
