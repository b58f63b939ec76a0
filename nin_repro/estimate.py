"""`--dry-run`: how long a table run should take on this device, answered in seconds.

A row's estimate is its training images over the img/s of its network's training step at its
batch size on this device. That rate comes, in this order of preference, from:

- ``cached``: a figure measured earlier on this device (by a dry run or by `nin-repro bench`),
  kept in ``<cache dir>/step-rates.json`` per device, jax version, network and batch size;
- ``FLOPs-scaled``: the figure of another network of the same input shape, dtype and batch size
  (cached or measured in this dry run, within ``MAX_FLOPS_RATIO`` of its FLOPs), times its FLOPs
  per image over this one's: a training step's time is mostly its convolutions;
- ``measured``: timed now (compile, one step, one timed step on synthetic data) and cached.

Rows with the same network and batch size share one figure. Evaluation time is not included.
A row whose seeds all stall is retried from a fresh initialisation up to ``attempts`` tries in all,
so its worst case is ``attempts`` times its plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

from nin_repro import atomic
from nin_repro.data.cache import default_cache_dir
from nin_repro.recipe import Recipe, Table
from nin_repro.results.stats import format_duration

RATES_FILE = "step-rates.json"
MAX_FLOPS_RATIO = 3.0  # no scaling between networks further apart: small ones are overhead-bound


@dataclasses.dataclass(frozen=True)
class Plan:
    variant: str
    seeds: int
    epochs: float
    images: int  # training images processed, all seeds
    img_per_s: float
    estimate_s: float
    method: str  # how img_per_s was found: "measured ...", "cached ...", "FLOPs-scaled ..."
    attempts: int = 1  # tries per seed when it stalls (Recipe.attempts)

    @property
    def worst_s(self) -> float:
        return self.attempts * self.estimate_s


def device_id() -> str:
    """This device, as specific as jax lets us say: on a CPU every model is "cpu" to jax, so the
    processor model and the cores this process may use are added."""
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind
    if devices[0].platform == "cpu":
        kind = f"{_cpu_model()}, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores"
    return f"{devices[0].platform}: {kind} x{len(devices)}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"


def rate_key(recipe: Recipe, device: str) -> str:
    """What a training step's speed depends on: the device, jax, the network (its config with the
    compute dtype), the random generator of its dropout masks and the batch size."""
    import jax

    from nin_repro.models import resolve_pool_grad

    model = dataclasses.asdict(recipe.model)
    if "pool_grad" in model:  # "auto" compiles the same program as what it resolves to on this backend
        model["pool_grad"] = resolve_pool_grad(model["pool_grad"])
    what = {"device": device, "jax": jax.__version__, "network": type(recipe.model).__name__, "model": model}
    what |= {"rng": recipe.rng_impl, "batch": recipe.batch_size}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _entry(recipe: Recipe, device: str, img_per_s: float, by: str, what: str, steps: int) -> dict:
    """A cached figure, with what FLOPs scaling compares (shape, dtype, batch) in the clear."""
    import jax

    return {
        "img_per_s": img_per_s,
        "train_flops_per_image": 3 * 2 * recipe.model.forward_macs(),
        "device": device,
        "jax": jax.__version__,
        "input": [*recipe.model.input_hw, recipe.model.in_channels],
        "dtype": recipe.model.dtype,
        "batch": recipe.batch_size,
        "by": by,
        "what": what,
        "steps": steps,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def rates_path(cache_dir: Path | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / RATES_FILE


def load_rates(cache_dir: Path | None) -> dict[str, dict]:
    """The cached figures; a missing, damaged or foreign file is an empty cache (re-measured)."""
    try:
        data = json.loads(rates_path(cache_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("img_per_s"), (int, float)) and v["img_per_s"] > 0}


def save_rates(cache_dir: Path | None, new: dict[str, dict]) -> None:
    """Add ``new`` to the cached figures. A cache that cannot be written costs a re-measurement
    next time, never the command."""
    if not new:
        return
    path = rates_path(cache_dir)
    try:
        atomic.write_json(path, {**load_rates(cache_dir), **new})
    except OSError as e:
        warnings.warn(f"could not cache the measured img/s in {path} ({e.strerror or e}); the next dry run measures again", stacklevel=2)


def remember_bench(table: str, recipe: Recipe, results, cache_dir: Path | None) -> None:
    """`nin-repro bench`'s training rates of one model at a time go into the cache a dry run reads."""
    device = device_id()
    new = {}
    for r in results:
        if r.what != "train" or r.models != 1:
            continue
        model = dataclasses.replace(recipe.model, dtype=r.dtype, **({"pool_grad": r.pool_grad} if hasattr(recipe.model, "pool_grad") else {}))
        timed = dataclasses.replace(recipe, model=model, batch_size=r.batch_size, rng_impl=r.rng_impl)
        new[rate_key(timed, device)] = _entry(timed, device, r.img_per_s, "bench", f"bench --table {table}", r.steps)
    save_rates(cache_dir, new)


def _scaling_reference(recipe: Recipe, device: str, rates: dict[str, dict]) -> dict | None:
    """The cached figure closest in FLOPs among those FLOPs scaling may use for ``recipe``."""
    import jax

    flops = 3 * 2 * recipe.model.forward_macs()
    shape = [*recipe.model.input_hw, recipe.model.in_channels]
    same = [
        e
        for e in rates.values()
        if (e.get("device"), e.get("jax"), e.get("input"), e.get("dtype"), e.get("batch")) == (device, jax.__version__, shape, recipe.model.dtype, recipe.batch_size)
        and isinstance(e.get("train_flops_per_image"), (int, float))
        and 1 / MAX_FLOPS_RATIO <= e["train_flops_per_image"] / flops <= MAX_FLOPS_RATIO
    ]
    return min(same, key=lambda e: abs(e["train_flops_per_image"] / flops - 1), default=None)


def measure(recipe: Recipe) -> tuple[float, int]:
    """img/s of ``recipe``'s training step here, and the steps timed: one after the compiling call
    on a CPU (a step of a full network takes seconds there), 20 in one scanned call elsewhere."""
    from nin_repro.bench import bench_recipe

    steps = 1 if _on_cpu() else 20
    (train,) = bench_recipe(recipe, batch_size=recipe.batch_size, dtype=recipe.model.dtype, steps=steps, evaluate=False, warmup=False)
    return train.img_per_s, steps


def _on_cpu() -> bool:
    import jax

    return jax.default_backend() == "cpu"


def step_rate(recipe: Recipe, name: str, device: str, rates: dict[str, dict], new: dict[str, dict]) -> tuple[float, str]:
    """img/s of ``recipe``'s training step and how it was found (see the module docstring); a
    figure measured here is added to ``rates`` and ``new``."""
    key = rate_key(recipe, device)
    if key in new:
        return new[key]["img_per_s"], f"measured now for {new[key]['what']} (same network)"
    if key in rates:
        e = rates[key]
        return e["img_per_s"], f"cached ({e.get('by', '?')}, {e.get('date', '?')})"
    ref = _scaling_reference(recipe, device, rates)
    if ref is not None:
        flops = 3 * 2 * recipe.model.forward_macs()
        return ref["img_per_s"] * ref["train_flops_per_image"] / flops, f"FLOPs-scaled from {ref.get('what', '?')} (its img/s x {ref['train_flops_per_image'] / flops:.2f})"
    img_per_s, steps = measure(recipe)
    rates[key] = new[key] = _entry(recipe, device, img_per_s, "dry run", name, steps)
    return img_per_s, f"measured now ({steps} step{'s' if steps > 1 else ''} of batch {recipe.batch_size})"


def plan(table: Table, opts) -> list[Plan]:
    """What a table run will do and how long it should take on this device (training only)."""
    from nin_repro.reproduce import TRAIN_SIZES, apply_options, smoke_train_size

    opts.validate()
    device, rates, new = device_id(), load_rates(opts.cache_dir), {}
    plans = []
    try:
        for variant in table.variants:
            recipe, _ = apply_options(variant.recipe, opts, table.smoke)
            n = smoke_train_size(recipe.model.num_classes) if opts.smoke else TRAIN_SIZES.get(recipe.dataset, 50_000)
            spe = max(1, n // recipe.batch_size)
            images = recipe.total_steps(spe) * recipe.batch_size * len(recipe.seeds)
            img_per_s, method = step_rate(recipe, f"{table.name}/{variant.key}", device, rates, new)
            plans.append(Plan(variant.key, len(recipe.seeds), recipe.total_epochs(spe), images, img_per_s, images / img_per_s, method, recipe.attempts))
    finally:
        save_rates(opts.cache_dir, new)  # what was measured is kept even when a later row fails
    return plans


PLAN_COLUMNS = ("row", "method", "seeds x epochs", "training images", "img/s", "img/s from", "estimate", "worst case")


def describe_plan(table: Table, opts) -> tuple[str, list[str], list[list[str]], list[str], float]:
    """``plan`` for people: a title, the table's columns and rows, the lines under it, and the
    total estimate in seconds."""
    plans = plan(table, opts)
    rows = [
        [
            f"{table.name}/{p.variant}",
            table.variant(p.variant).method,
            f"{p.seeds} x {p.epochs:g}",
            f"{p.images:,}",
            f"{p.img_per_s:,.0f}",
            p.method,
            format_duration(p.estimate_s),
            f"{format_duration(p.worst_s)} ({p.attempts} attempts)" if p.attempts > 1 else format_duration(p.worst_s),
        ]
        for p in plans
    ]
    total, worst = sum(p.estimate_s for p in plans), sum(p.worst_s for p in plans)
    notes = [
        f"{table.name}: about {format_duration(total)} in all on this device (estimate, training only).",
        f"Worst case with retries: {format_duration(worst)}, if every seed stalls on every attempt "
        "(a stalled seed is retried from a fresh initialisation; --set attempts=N sets the tries).",
        f"img/s: measured now on synthetic data and cached, cached from an earlier dry run or `nin-repro bench` on this device, "
        f"or FLOPs-scaled from a cached figure of a network of the same input, dtype and batch size (cache: {rates_path(opts.cache_dir)}).",
    ]
    return f"{table.name} --dry-run on {device_id()}", list(PLAN_COLUMNS), rows, notes, total
