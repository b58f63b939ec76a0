"""``nin-repro init-study``: does a recipe learn on real images, and if not, why and what fixes it.

For each variant of ``experiments/init_study.py``: the signal scale at initialisation (the std of
the input, of every block's output and of the class scores, seed 0, 128 training images), then
every seed trained with the stall checks watching but never stopping it (so a flagged seed's end
is seen too). Per seed: stalled or not (nin_repro.health, the recipe's N and E), the first epoch
whose mean training loss is below ln C - 0.05, the final test error, the longest streak of steps
with a dead class map, the most maps dead at once. The table also says whether the stall
criterion agrees with what happened: a flagged seed should end near chance, an unflagged one learn.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import statistics
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nin_repro import atomic
from nin_repro.figures import read_metrics
from nin_repro.provenance import provenance
from nin_repro.recipe import Recipe, load_experiment
from nin_repro.reproduce import Options, load_table_data, parallel_seeds, prepare
from nin_repro.results.stats import format_duration
from nin_repro.train import PreparedData, init_model, train_and_evaluate_seeds
from nin_repro.xla_options import jit_run_once

LEARNED_BELOW_PCT = 50.0  # a seed "learned" if its final test error is below this (chance: 90 %)
LEFT_LN_C_BY = 0.05


@dataclasses.dataclass(frozen=True)
class SeedOutcome:
    seed: int
    stalled: str | None
    first_learning_epoch: int | None  # first epoch with mean training loss < ln C - 0.05
    last_epoch_at_ln_c: int | None  # last epoch whose mean training loss was within 1e-3 of ln C
    test_error_pct: float
    max_dead_run: int
    max_dead_classes: int

    @property
    def learned(self) -> bool:
        return self.test_error_pct < LEARNED_BELOW_PCT


def signal_scale(recipe: Recipe, x_BHWC: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Std of the input, of each block's output and of the class scores at initialisation, as
    evaluation sees them (no masks; the author's dropout multiplies by 1 - p) and, under ``train_*``,
    as training sees them (dropout masks on, one fixed key). The two differ by the dropout form:
    inverted dropout scales the training signal up by 1 / (1 - p) per layer, the author's does not."""
    graphdef, state = nnx.split(init_model(recipe, seed))
    stds = _signal_program(graphdef)(state, jax.numpy.asarray(x_BHWC), seed)
    return {"input": float(np.std(x_BHWC))} | {k: float(v) for k, v in stds.items()}


@functools.cache
def _signal_program(graphdef: nnx.GraphDef):
    """One program per network (compiled at O0 on a CPU, as init: it runs once), not op by op: the
    init study measures every variant, and op by op that was ~120 small compiles (13 of 25 s of a
    tiny study on 2 cores)."""

    def stds(state, x, seed):
        model = nnx.merge(graphdef, state)
        out, last = {}, len(model.blocks) - 1
        for prefix, train in (("", False), ("train_", True)):
            # One fresh stream per pass: the blocks here and the whole model below draw the same masks.
            rngs = nnx.Rngs(dropout=jax.random.key(seed)) if train else None
            h = x
            for i, block in enumerate(model.blocks):
                h = block(h, final_relu=model.config.final_relu or i != last, train=train, rngs=rngs)
                out[f"{prefix}block{i + 1}"] = jax.numpy.std(h)
            scores = model(x, train=train, rngs=nnx.Rngs(dropout=jax.random.key(seed)) if train else None)
            out[f"{prefix}class_scores"] = jax.numpy.std(scores)
        return out

    return jit_run_once(stds)


def outcome(run, ln_c: float, tolerance: float) -> SeedOutcome:
    records = read_metrics(run.run_dir)
    losses = [r["train_loss"] for r in records]
    first = next((i + 1 for i, v in enumerate(losses) if v < ln_c - LEFT_LN_C_BY), None)
    at_ln_c = [i + 1 for i, v in enumerate(losses) if abs(v - ln_c) <= tolerance]
    return SeedOutcome(run.seed, run.stalled, first, at_ln_c[-1] if at_ln_c else None, 100.0 * run.test_error, run.max_dead_run, run.max_dead_classes)


def scaled(recipe: Recipe, width: float, epochs: float | None) -> Recipe:
    """A cheaper copy for checks on a CPU: widths x ``width``, ``epochs`` epochs."""
    changes = {}
    if width != 1.0:
        changes["model"] = recipe.model.scaled(width)
    if epochs is not None:
        changes["epochs"] = epochs
    return dataclasses.replace(recipe, **changes)


def run_study(
    results_dir: Path,
    workdir: Path,
    seeds: int | None = None,
    epochs: float | None = None,
    width: float = 1.0,
    only: tuple[str, ...] = (),
    parallel: bool | None = None,
    progress=None,
    signal_only: bool = False,
) -> tuple[Path, Path]:
    """Train the variants (``only``: those named) and write results/init-study.md + .json; with
    ``signal_only``, train nothing and write the signal scale of every variant (of ``only``, if given) to
    results/init-study-signal.md + .json (seconds on a CPU, so the committed study's trained rows
    are not replaced by a run that trains none)."""
    study = load_experiment("init_study")
    unknown = [k for k in only if k not in {key for key, *_ in study.VARIANTS}]
    if unknown:
        from nin_repro.errors import UsageError

        raise UsageError(f"--only {unknown[0]}: no such variant; variants: {', '.join(k for k, *_ in study.VARIANTS)}")
    rows, scales, started = [], {}, time.perf_counter()
    prepared: dict[tuple[str, str], tuple[PreparedData, Path]] = {}
    for key, group, what, recipe in study.VARIANTS:
        recipe = scaled(recipe, width, epochs)
        if seeds is not None:
            recipe = dataclasses.replace(recipe, seeds=tuple(range(seeds)))
        if signal_only and only and key not in only:
            continue
        data_key = (recipe.dataset, recipe.preprocess)
        if data_key not in prepared:
            prepared[data_key] = prepare(load_table_data(recipe, Options()), recipe, workdir / "init-study")
        data, _ = prepared[data_key]
        # Every variant's signal scale (cheap); training only for those asked for.
        scales[key] = {
            **signal_scale(recipe, data.x_train[:128]),
            # What a cuda-convnet data provider would subtract next (its batches' data_mean).
            "max_abs_train_mean": float(np.abs(data.x_train.mean(axis=0)).max()),
        }
        if signal_only or only and key not in only:
            continue
        rows.append(_trained_row(key, group, what, recipe, data, workdir, parallel, progress))
    shortened = width != 1.0 if signal_only else seeds is not None and seeds < len(study.SEEDS) or epochs is not None or width != 1.0
    record = {
        "study": "init-study-signal" if signal_only else "init-study",
        "what": (
            "the std of the input, of each block's output and of the class scores at initialisation, as evaluation and as training see them"
            if signal_only
            else "the MNIST recipe as published, one change at a time, on the 4,000 / 1,000 shipped real digits"
        ),
        "shortened": (f"width x{width}" if signal_only else f"seeds={seeds}, epochs={epochs}, width x{width}") if shortened else None,
        "signal_only": signal_only,
        "learned_below_pct": LEARNED_BELOW_PCT,
        "variants": rows,
        "signal_scale": scales,
        "changes": {key: what for key, _, what, _ in study.VARIANTS},
        "dropout_forms": {key: recipe.model.dropout_form for key, _, _, recipe in study.VARIANTS},
        "wall_s": time.perf_counter() - started,
        "provenance": provenance(),
    }
    out_dir = Path(results_dir) / ("partial" if shortened else "")
    md, js = out_dir / f"{record['study']}.md", out_dir / f"{record['study']}.json"
    for row in rows:
        row["provenance"] = record["provenance"]
    if only and not signal_only:
        record["variants"] = keep_other_rows(js, rows, [key for key, *_ in study.VARIANTS])
    atomic.write_json(js, record)
    atomic.write_text(md, render(record))
    return md, js


def _trained_row(key: str, group: str, what: str, recipe: Recipe, data: PreparedData, workdir: Path, parallel: bool | None, progress) -> dict:
    """Train every seed of one variant (stall checks watching, never stopping) and describe each seed."""
    opts = Options(parallel_seeds=parallel)
    seed_groups = [list(recipe.seeds)] if parallel_seeds(opts, recipe) else [[s] for s in recipe.seeds]
    t0, runs = time.perf_counter(), []
    for seed_group in seed_groups:
        dirs = [workdir / "init-study" / key / f"seed_{s}" for s in seed_group]
        runs += train_and_evaluate_seeds(recipe, data, dirs, seed_group, progress, stop_on_stall=False)
    ln_c = math.log(data.num_classes)
    outcomes = [outcome(r, ln_c, recipe.stall_tolerance) for r in runs]
    return {
        "key": key,
        "group": group,
        "change": what,
        "preprocess": recipe.preprocess,
        "dataset": recipe.dataset,
        "epochs": runs[0].epochs,
        "dead_steps": recipe.dead_steps,
        "stall_epochs": recipe.stall_epochs,
        "seeds": [dataclasses.asdict(o) | {"learned": o.learned} for o in outcomes],
        "wall_s": time.perf_counter() - t0,
    }


def keep_other_rows(previous_json: Path, rows: list[dict], order: list[str]) -> list[dict]:
    """``rows`` plus the rows of the study already in ``previous_json`` for the variants not re-run
    (``--only`` adds to the study instead of replacing it), each with the provenance it was
    measured with, in the study's order. An unreadable previous file is kept out, with a warning."""
    if not previous_json.exists():
        return rows
    try:
        previous = json.loads(previous_json.read_text(encoding="utf-8"))
        old = [dict(row, provenance=row.get("provenance", previous["provenance"])) for row in previous["variants"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"{previous_json} is not readable ({err}); its rows are not kept", stacklevel=2)
        return rows
    new = {row["key"] for row in rows}
    merged = [row for row in old if row["key"] not in new and row["key"] in order] + rows
    return sorted(merged, key=lambda row: order.index(row["key"]))


def _median(values):
    return statistics.median(values) if values else None


def render(record: dict) -> str:
    prov = record["provenance"]
    dev = prov.get("device", {})
    lines = [
        "# Init study: does the paper's MNIST recipe learn on real digits?",
        "",
        f"{record['what'][0].upper() + record['what'][1:]}. Not a paper table: it explains the stalls and picks each table's "
        'input and the smallest departure (docs/paper-notes.md, "The dead last layer").',
    ]
    if record["shortened"]:
        lines += ["", f"**Shortened run ({record['shortened']}): a check of the command, not evidence.**"]
    if record.get("signal_only"):
        lines += ["", "**Signal scale only: nothing was trained in this run** (`nin-repro init-study --signal-only`); the trained study is results/init-study.md."]
    lines += [
        "",
        "| variant | change | dropout | epochs | stalled | learned | first epoch below ln C − 0.05 (median) "
        "| test error %: learned seeds | test error %: all seeds | flag agrees |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    forms = record.get("dropout_forms", {})
    for v in record["variants"]:
        seeds = v["seeds"]
        n = len(seeds)
        stalled = sum(1 for s in seeds if s["stalled"])
        learned = [s["test_error_pct"] for s in seeds if s["learned"]]
        all_err = [s["test_error_pct"] for s in seeds]
        first = _median([s["first_learning_epoch"] for s in seeds if s["first_learning_epoch"] is not None])
        agree = sum(1 for s in seeds if bool(s["stalled"]) != s["learned"])
        lines.append(
            f"| `{v['key']}` | {v['change']} | {forms.get(v['key'], '?')} | {v['epochs']:g} | {stalled}/{n} | {len(learned)}/{n} | {first if first is not None else 'never'} | "
            f"{_mean_std(learned)} | {_mean_std(all_err)} | {agree}/{n} |"
        )
    lines += [
        "",
        f"*stalled*: the stall check (at least one class map dead for N consecutive steps, or the epoch's training loss "
        f"within 1e-3 of ln C after E epochs; N and E as listed below) fired; the seed was trained to the end anyway. "
        f"*learned*: final test error below {record['learned_below_pct']:g} % (chance is 90 %). *flag agrees*: stalled "
        "and did not learn, or not stalled and learned.",
        "",
        "## Signal scale at initialisation (seed 0, 128 training images, std), every variant",
        "",
        "As evaluation sees it (no dropout masks; the author's dropout multiplies by 1 − p), then as training sees it "
        "(dropout masks on, one fixed key): inverted dropout scales the training signal by 1 / (1 − p) per dropout layer, "
        "the author's does not.",
        "",
    ]
    first = next(iter(record["signal_scale"].values()))
    names = [k for k in first if k not in ("input", "max_abs_train_mean") and not k.startswith("train_")]
    trained = [f"train_{n}" for n in names if f"train_{n}" in first]
    lines += [
        "| variant | change | dropout | input | " + " | ".join(names) + " | " + "".join(f"{n.replace('_', ' ')} | " for n in trained) + "max abs per-pixel training mean |",
        "|---|---|---|---|" + "---|" * (len(names) + len(trained) + 1),
    ]
    for key, sc in record["signal_scale"].items():
        cells = [f"{sc[n]:.3g}" for n in names + trained]
        lines.append(f"| `{key}` | {record['changes'][key]} | {forms.get(key, '?')} | {sc['input']:.3g} | " + " | ".join(cells) + f" | {sc['max_abs_train_mean']:.3g} |")
    lines += ["", "## Per seed", ""] if record["variants"] else []
    for v in record["variants"]:
        commit = v.get("provenance", prov).get("commit", "unknown")
        lines.append(
            f"- `{v['key']}` (N = {v['dead_steps']} steps, E = {v['stall_epochs']:g} epochs, {v['epochs']:g} epochs, {format_duration(v['wall_s'])}, commit `{commit[:12]}`):"
        )
        for s in v["seeds"]:
            state = s["stalled"] or "not stalled"
            lines.append(
                f"  - seed {s['seed']}: {s['test_error_pct']:.2f} %; {state}; first epoch below ln C − 0.05: "
                f"{s['first_learning_epoch'] or 'never'}; last epoch at ln C: {s['last_epoch_at_ln_c'] or 'none'}; "
                f"longest dead-map streak {s['max_dead_run']} steps, at most {s['max_dead_classes']} maps dead at once"
            )
    lines += [
        "",
        "## Provenance",
        "",
        f"- Commit: `{prov.get('commit', 'unknown')}`; device: {dev.get('kind', '?') if isinstance(dev, dict) else dev}; "
        f"versions: {', '.join(f'{k} {v}' for k, v in prov.get('versions', {}).items()) if isinstance(prov.get('versions'), dict) else '?'}",
        f"- Wall time: {format_duration(record['wall_s'])}; date (UTC): {prov.get('date', 'unknown')}",
        "- Rows kept from earlier runs (`--only` adds to the study) name their own commit under Per seed.",
    ]
    return "\n".join(lines) + "\n"


def _mean_std(values) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
