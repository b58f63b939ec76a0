"""`nin-repro check-gpu`: the whole GPU evidence in one command, within a wall-clock budget.

Four parts, in this order, each written to ``results/check-gpu.md`` (and ``.json``) as soon as one
of its items finishes, so a run cut off (by the budget, a crash or the machine going away) keeps
what it finished:

1. ``bench`` (nin_repro.bench): the CIFAR-10 network, bf16 batch 512 one model, fp32 batch 128
   one model, fp32 batch 128 with 5 vmapped seeds, against the compute and memory ceilings;
2. ``cifar``: the CIFAR-10 recipe (``experiments/cifar10.py``, first row) on the shipped digits as
   32x32x3 (``digits5k_rgb32``, proxy data) at its 260-epoch schedule, 3 seeds, then ``--recipe
   zoo``, 3 seeds: stalls and final errors;
3. ``mnist``: the MNIST table's two rows at their full schedule on the shipped digits, 8 seeds
   each, stalled seeds retried as the table does: stalls, attempts, final errors;
4. ``init-study``: every variant of ``experiments/init_study.py``, 8 seeds, for a horizon of
   3,000 steps (the committed CPU study stopped at 248).

``--part baselines`` (only when named; issue 19, section 5): the maxout SVHN and CIFAR-10 nets of
the tables' baseline rows on ``digits5k_rgb32``, 3 seeds, 200 epochs each (within the part's
share of the budget), as ``python -m nin_repro.baselines_study`` runs them (the yamls' schedules
unscaled on epochs of the 4,000 digits, svhn2.yaml's phase left out) and a stall only at the end
(``stall_epochs`` = the run: the yamls' init holds the loss at ln 10 for dozens of epochs, and such
a net still learns: on this CPU the SVHN net's seed 0 left ln 10 - 0.05 only in epoch 89,
results/baselines-real-digits-svhn-150.md). On a CPU that is hours a seed; they need a GPU.

The budget: each part gets a share of what is left when it starts (``SHARES``; time a part does
not use passes to the later ones), each item of a part an equal share of what is left of the
part. An item whose share is gone before it starts is skipped; a training run whose share runs out
stops at the next epoch boundary (the epoch in flight is dropped). Both are recorded as cut, with
what finished. Compiles count against the budget; a compile or an epoch can overrun it a little.

The zoo row: the Caffe solver's 120,000 iterations are 3,871 epochs of the 4,000 digits, so it is
scaled to the paper schedule's 260 epochs (its LR drop at 100/120 of the run), recorded as such.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

from nin_repro import atomic
from nin_repro.errors import TrainingFailed, UsageError

PARTS = ("bench", "cifar", "mnist", "init-study")
EXTRA_PARTS = ("baselines",)  # run only when named with --part
SHARES = {"bench": 0.08, "cifar": 0.32, "mnist": 0.25, "init-study": 0.35, "baselines": 0.35}
DEFAULT_BUDGET_MIN = 9.0
CIFAR_PROXY = "digits5k_rgb32"
MNIST_DIGITS = "digits5k"


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big the check is. ``full`` is the issue's plan; the other fields shrink it for a test
    (any shrunk plan is marked shortened in the results)."""

    width: float = 1.0  # every hidden width x this
    epochs: float | None = None  # table rows: None = the schedule's own length
    zoo_epochs: float = 260.0  # the zoo solver scaled to this many epochs (see the module doc)
    cifar_seeds: int = 3
    mnist_seeds: int = 8
    study_seeds: int = 8
    horizon_steps: int = 3000  # init-study
    variants: tuple[str, ...] = ()  # init-study variants; () = every one
    train_images: int | None = None  # the first N training images only (None = all 4,000)
    batch_size: int | None = None  # table rows and study (None = the recipe's)
    bench: tuple[tuple[str, int, int], ...] = (("bf16", 512, 1), ("fp32", 128, 1), ("fp32", 128, 5))  # (dtype, batch, seeds)
    bench_steps: int = 20
    baseline_epochs: int = 200  # --part baselines (the module doc)
    baseline_seeds: int = 3

    def shortened(self) -> str | None:
        """What differs from the full plan, in words (None: the full plan)."""
        diff = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self) if getattr(self, f.name) != f.default]
        return ", ".join(diff) or None


# --scale tiny: the plan in seconds on a CPU (tests, a first look); still the same code path.
TINY = Scale(
    width=0.0625,
    epochs=2.0,
    zoo_epochs=2.0,
    cifar_seeds=2,
    mnist_seeds=2,
    study_seeds=2,
    horizon_steps=16,
    variants=("input_pixel_mean", "pixel_mean_lr_0.01"),
    train_images=512,
    batch_size=64,
    bench=(("bf16", 16, 1), ("fp32", 8, 1), ("fp32", 8, 2)),
    bench_steps=2,
    baseline_epochs=2,
    baseline_seeds=1,
)
SCALES = {"full": Scale(), "tiny": TINY}


def shrunk(scale: str, *, width=None, epochs=None, seeds=None, horizon=None, variants=()) -> Scale:
    """The ``--scale`` preset with the command's knobs applied on top."""
    if scale not in SCALES:
        raise UsageError(f"unknown --scale {scale!r}: choose one of {', '.join(SCALES)}")
    if width is not None and not 0 < width <= 1 or epochs is not None and not 0 < epochs < math.inf or seeds is not None and seeds < 1 or horizon is not None and horizon < 1:
        raise UsageError("--width must be in (0, 1], --epochs positive, --seeds and --horizon >= 1")
    changes: dict = {"width": width, "epochs": epochs, "horizon_steps": horizon, "variants": tuple(variants) or None}
    if epochs is not None:
        changes["zoo_epochs"] = epochs
    if seeds is not None:
        changes.update(cifar_seeds=seeds, mnist_seeds=seeds, study_seeds=seeds)
    return dataclasses.replace(SCALES[scale], **{k: v for k, v in changes.items() if v is not None})


def check_parts(parts) -> tuple[str, ...]:
    """``parts`` in the check's order; an unknown name is a usage error."""
    bad = [p for p in parts if p not in PARTS + EXTRA_PARTS]
    if bad:
        raise UsageError(f"--part {bad[0]}: choose from {', '.join(PARTS + EXTRA_PARTS)}")
    return tuple(p for p in PARTS + EXTRA_PARTS if p in parts)


class BudgetCut(Exception):
    """A training run's share of the budget ran out; raised at an epoch boundary."""


class Budget:
    """The wall-clock budget: shares of what is left, handed out as parts and items start."""

    def __init__(self, total_s: float, parts: tuple[str, ...], clock: Callable[[], float] = time.monotonic):
        self.clock, self.parts = clock, list(parts)
        self.end = clock() + total_s

    def left(self) -> float:
        return self.end - self.clock()

    def part_deadline(self, part: str) -> float:
        """When ``part`` (starting now) must end: its share of what is left among the parts to come."""
        todo = self.parts[self.parts.index(part) :]
        share = SHARES[part] / sum(SHARES[p] for p in todo)
        return self.clock() + share * max(0.0, self.left())

    def item_deadline(self, part_deadline: float, items_left: int) -> float:
        """An equal share of what is left of the part for each of its ``items_left`` items."""
        return self.clock() + max(0.0, part_deadline - self.clock()) / max(1, items_left)


class Deadline:
    """A ``train.Progress`` that stops a run at the first chunk after an epoch boundary once
    ``deadline`` has passed (a run's last chunk is never cut), and passes everything on to ``inner``."""

    def __init__(self, deadline: float, clock: Callable[[], float], inner=None):
        from nin_repro.progress import NullProgress

        self.deadline, self.clock, self.inner = deadline, clock, inner or NullProgress()
        self.total, self.after_epoch = 0, False

    def start(self, total_steps: int, description: str) -> None:
        self.total, self.after_epoch = total_steps, False
        self.inner.start(total_steps, description)

    def update(self, step: int, *, epoch: float, loss: float, img_per_s: float) -> None:
        if self.after_epoch and step < self.total and self.clock() >= self.deadline:
            self.inner.close()
            raise BudgetCut(f"budget share used up at epoch {math.floor(epoch)}")
        self.after_epoch = False
        self.inner.update(step, epoch=epoch, loss=loss, img_per_s=img_per_s)

    def epoch_end(self, record: dict) -> None:
        self.after_epoch = True
        self.inner.epoch_end(record)

    def close(self) -> None:
        self.inner.close()


# --------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class TableItem:
    """One table row of the check: a recipe, its seeds, where it trains."""

    part: str
    label: str
    table: str  # experiment file
    variant: str
    schedule: str | None  # --recipe (None: the table's)
    dataset: str
    seeds: int
    epochs: float | None
    sets: tuple[str, ...] = ()  # --set overrides on top


def table_items(scale: Scale) -> list[TableItem]:
    cifar = [
        TableItem("cifar", "cifar10 recipe (author's schedule)", "cifar10", "nin_dropout", None, CIFAR_PROXY, scale.cifar_seeds, scale.epochs),
        TableItem("cifar", "cifar10 --recipe zoo", "cifar10", "nin_dropout", "zoo", CIFAR_PROXY, scale.cifar_seeds, scale.zoo_epochs),
    ]
    mnist = [TableItem("mnist", f"mnist {v}", "mnist", v, None, MNIST_DIGITS, scale.mnist_seeds, scale.epochs) for v in ("nin_dropout", "nin_dropout_ours")]
    e = scale.baseline_epochs
    # As baselines_study (see the module doc): one try each, a stall reported at the end, not retried.
    sets = (f"max_epochs={e}", "pylearn2_phase2=[]", f"stall_epochs={e}", "attempts=1")
    baselines = [
        TableItem("baselines", f"{t} maxout_dropout ({yaml}), {e} epochs", t, "maxout_dropout", None, CIFAR_PROXY, scale.baseline_seeds, None, sets)
        for t, yaml in (("svhn", "svhn.yaml"), ("cifar10", "cifar10_no_aug.yaml"))
    ]
    return cifar + mnist + baselines


def item_recipe(item: TableItem, scale: Scale):
    """The recipe ``item`` trains, through the table commands' own option handling."""
    from nin_repro.recipe import load_experiment
    from nin_repro.reproduce import Options, apply_options

    table = load_experiment(item.table).TABLE
    overrides = (f"dataset={item.dataset}",) + ((f"batch_size={scale.batch_size}",) if scale.batch_size else ()) + item.sets
    opts = Options(seeds=item.seeds, epochs=item.epochs, schedule=item.schedule, overrides=overrides)
    recipe, _ = apply_options(table.variant(item.variant).recipe, opts, table.smoke)
    if scale.width != 1.0:
        recipe = dataclasses.replace(recipe, model=recipe.model.scaled(scale.width))
    return table, recipe


def study_variants(scale: Scale) -> list[tuple[str, str, str, object]]:
    from nin_repro.recipe import load_experiment

    variants = load_experiment("init_study").VARIANTS
    known = [key for key, *_ in variants]
    unknown = [k for k in scale.variants if k not in known]
    if unknown:
        raise UsageError(f"--variant {unknown[0]}: no such init-study variant; variants: {', '.join(known)}")
    chosen = [v for v in variants if not scale.variants or v[0] in scale.variants]
    # The author's-dropout variants first (the paper rows' form and the departure candidates, never
    # measured): if the budget cuts the part, it cuts the inverted ones, which have CPU numbers.
    return sorted(chosen, key=lambda v: not v[0].startswith("author_"))


def study_recipe(recipe, scale: Scale, steps_per_epoch: int):
    """An init-study variant at the check's horizon: its constant-LR schedule stretched to
    ``horizon_steps`` steps (study.scaled), ``study_seeds`` seeds."""
    from nin_repro.study import scaled

    recipe = dataclasses.replace(recipe, seeds=tuple(range(scale.study_seeds)), **({"batch_size": scale.batch_size} if scale.batch_size else {}))
    return scaled(recipe, scale.width, scale.horizon_steps / steps_per_epoch)


# --------------------------------------------------------------------------- the check


@dataclasses.dataclass
class Check:
    """What the check has done so far; written after every item."""

    scale: Scale
    scale_name: str
    budget_s: float
    results_dir: Path
    workdir: Path
    clock: Callable[[], float] = time.monotonic
    progress: object | None = None  # inner train.Progress (display); None shows nothing
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    record: dict = dataclasses.field(default_factory=dict)

    def start(self, parts: tuple[str, ...]) -> None:
        from nin_repro.provenance import provenance

        self.t0 = self.clock()
        self.budget = Budget(self.budget_s, parts, self.clock)
        self.record = {
            "check": "check-gpu",
            "what": "the suite's speed and the recipes at full length on this device, in one command",
            "scale": self.scale_name,
            "shortened": self.scale.shortened(),
            "plan": dataclasses.asdict(self.scale),
            "budget_s": self.budget_s,
            "shares": SHARES,
            "parts": [{"name": p, "status": "not started", "items": []} for p in parts],
            "wall_s": 0.0,
            "provenance": provenance(),
        }
        self.write()

    def part(self, name: str) -> dict:
        return next(p for p in self.record["parts"] if p["name"] == name)

    def write(self) -> tuple[Path, Path]:
        from nin_repro.report import write_report

        self.record["wall_s"] = self.clock() - self.t0
        md, js = self.results_dir / "check-gpu.md", self.results_dir / "check-gpu.json"
        atomic.write_json(js, self.record)
        atomic.write_text(md, render(self.record))
        write_report(self.results_dir)
        return md, js

    def add(self, part: str, item: dict) -> None:
        entry = self.part(part)
        entry["items"].append(item)
        states = {i["status"] for i in entry["items"]}
        entry["status"] = next(s for s in ("failed", "cut", "finished") if s in states)
        self.say(f"check-gpu: {part}: {item['label']}: {item['status']}" + (f" ({item['cut']})" if item.get("cut") else ""))
        self.write()


def run_check(check: Check, parts: tuple[str, ...] = PARTS) -> tuple[Path, Path]:
    """Run ``parts`` in order within the budget, writing the results after every item."""
    parts = check_parts(parts)
    study_variants(check.scale)  # an unknown --variant fails before anything runs
    check.workdir = Path(check.workdir) / time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    check.start(parts)
    runners = {"bench": _bench_part, "cifar": _table_part, "mnist": _table_part, "init-study": _study_part, "baselines": _table_part}
    for name in parts:
        deadline = check.budget.part_deadline(name)
        check.part(name).update(status="running", allowance_s=round(deadline - check.clock(), 1))
        t = check.clock()
        runners[name](check, name, deadline)
        check.part(name)["wall_s"] = check.clock() - t
        if check.part(name)["status"] == "running":  # a part with nothing to run
            check.part(name)["status"] = "finished"
    return check.write()


def _skipped(label: str, **fields) -> dict:
    return {"label": label, "status": "cut", "cut": "not started: the budget's share was used up", **fields}


def _bench_part(check: Check, part: str, deadline: float) -> None:
    from nin_repro.bench import DTYPES, bench_recipe

    recipe = _bench_recipe(check.scale)
    for dtype, batch, seeds in check.scale.bench:
        label = f"{dtype} batch {batch}" + (f" x {seeds} seeds" if seeds > 1 else "")
        if check.clock() >= deadline:
            check.add(part, _skipped(label))
            continue
        t = check.clock()
        try:
            results = bench_recipe(recipe, batch_size=batch, dtype=DTYPES[dtype], steps=check.scale.bench_steps, seeds=seeds)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory at batch 512: recorded, and the check goes on
            check.add(part, {"label": label, "status": "failed", "cut": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}", "wall_s": check.clock() - t})
            continue
        # Evaluation does not depend on the seed count: one row of it per dtype and batch.
        rows = [dataclasses.asdict(r) for r in results if r.what == "train" or seeds == 1]
        check.add(part, {"label": label, "status": "finished", "results": rows, "wall_s": check.clock() - t})


def _bench_recipe(scale: Scale):
    from nin_repro.recipe import load_experiment

    recipe = load_experiment("cifar10").TABLE.variants[0].recipe
    return dataclasses.replace(recipe, model=recipe.model.scaled(scale.width)) if scale.width != 1.0 else recipe


def _prepared(check: Check, recipe, cache: dict):
    """The preprocessed data of ``recipe`` (its dataset and preprocessing), once per check."""
    from nin_repro.data.cache import sha256_file
    from nin_repro.reproduce import Options, load_table_data, prepare

    key = (recipe.dataset, recipe.preprocess)
    if key not in cache:
        ds = load_table_data(recipe, Options())
        n = check.scale.train_images
        if n:  # a shortened plan: the first n training images
            ds = dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])
        data, path = prepare(ds, recipe, check.workdir)
        cache[key] = (data, {"path": str(path.resolve()), "sha256": sha256_file(path)})
    return cache[key]


def train_size(scale: Scale) -> int:
    """Training images of the shipped digits the plan uses (4,000, or the first ``train_images``)."""
    from nin_repro.data.digits import TRAIN_PER_CLASS

    return min(scale.train_images or 10 * TRAIN_PER_CLASS, 10 * TRAIN_PER_CLASS)


def _table_part(check: Check, part: str, deadline: float) -> None:
    from nin_repro.reproduce import Options, shortened_label, train_with_retries

    items = [i for i in table_items(check.scale) if i.part == part]
    cache: dict = {}
    for n, item in enumerate(items):
        table, recipe = item_recipe(item, check.scale)
        variant = table.variant(item.variant)
        spe = train_size(check.scale) // recipe.batch_size
        entry = {
            "label": item.label,
            "recipe": shortened_label(recipe, recipe.schedule_epochs(spe), False, variant.recipe),
            "planned_epochs": recipe.total_epochs(spe),
            "planned_steps": recipe.total_steps(spe),
            "attempts_allowed": recipe.attempts,
        }
        if check.clock() >= deadline:
            check.add(part, {**entry, **_skipped(item.label, seeds=[])})
            continue
        item_deadline = check.budget.item_deadline(deadline, len(items) - n)
        entry["allowance_s"] = round(item_deadline - check.clock(), 1)
        data, pre_ref = _prepared(check, recipe, cache)
        vdir = check.workdir / part / f"{item.variant}{'-' + item.schedule if item.schedule else ''}"
        check.say(f"check-gpu: {part}: {item.label}: {len(recipe.seeds)} seeds x {recipe.total_epochs(spe):g} epochs, share {_fmt(entry['allowance_s'])}")
        t = check.clock()
        try:
            histories = train_with_retries(table, variant, recipe, data, pre_ref, vdir, Options(), progress=Deadline(item_deadline, check.clock, check.progress))
        except (BudgetCut, TrainingFailed) as cut:  # a failed row (non-finite loss) is recorded too; the check goes on
            entry.update(status="cut" if isinstance(cut, BudgetCut) else "failed", cut=str(cut), seeds=[_so_far(vdir, seed) for seed in recipe.seeds])
        else:
            seeds = [
                {"seed": h[-1].seed, "attempts": len(h), "stalled": h[-1].stalled, "test_error_pct": 100 * h[-1].test_error, "epochs": h[-1].epochs, "steps": h[-1].steps}
                for h in histories
            ]
            entry.update(status="finished", seeds=seeds)
        entry["wall_s"] = check.clock() - t
        check.add(part, entry)


def _so_far(variant_dir: Path, seed: int) -> dict:
    """What a cut seed finished: each attempt folder's last logged epoch (metrics.jsonl)."""
    from nin_repro.reproduce import seed_dir

    out = {"seed": seed, "attempts": 0, "stalled": None, "test_error_pct": None, "epochs": 0, "steps": 0}
    attempt = 0
    while seed_dir(variant_dir, seed, attempt).is_dir():
        last = _last_metrics(seed_dir(variant_dir, seed, attempt))
        out.update(attempts=attempt + 1, epochs=last.get("epoch", 0), steps=last.get("step", 0))
        out["test_error_pct"] = 100 * last["test_error"] if "test_error" in last else None
        attempt += 1
    return out


def _last_metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def _study_part(check: Check, part: str, deadline: float) -> None:
    from nin_repro.reproduce import Options, parallel_seeds
    from nin_repro.study import outcome
    from nin_repro.train import train_and_evaluate_seeds

    variants = study_variants(check.scale)
    cache: dict = {}
    for n, (key, group, what, recipe) in enumerate(variants):
        recipe = study_recipe(recipe, check.scale, train_size(check.scale) // (check.scale.batch_size or recipe.batch_size))
        entry = {"label": key, "group": group, "change": what, "planned_steps": recipe.total_steps(train_size(check.scale) // recipe.batch_size)}
        if check.clock() >= deadline:
            check.add(part, {**entry, **_skipped(key, seeds=[])})
            continue
        item_deadline = check.budget.item_deadline(deadline, len(variants) - n)
        entry["allowance_s"] = round(item_deadline - check.clock(), 1)
        data, _ = _prepared(check, recipe, cache)
        groups = [list(recipe.seeds)] if parallel_seeds(Options(), recipe) else [[s] for s in recipe.seeds]
        progress = Deadline(item_deadline, check.clock, check.progress)
        check.say(f"check-gpu: {part}: {key}: {len(recipe.seeds)} seeds x {entry['planned_steps']:,} steps, share {_fmt(entry['allowance_s'])}")
        t, runs = check.clock(), []
        try:
            for seeds in groups:
                dirs = [check.workdir / part / key / f"seed_{s}" for s in seeds]
                runs += train_and_evaluate_seeds(recipe, data, dirs, seeds, progress, stop_on_stall=False)
        except (BudgetCut, TrainingFailed) as cut:
            status = "cut" if isinstance(cut, BudgetCut) else "failed"
            entry.update(status=status, cut=str(cut), seeds=[_so_far(check.workdir / part / key, s) for s in recipe.seeds])
        else:
            ln_c = math.log(data.num_classes)
            outcomes = [(r, outcome(r, ln_c, recipe.stall_tolerance)) for r in runs]
            entry.update(status="finished", seeds=[dataclasses.asdict(o) | {"learned": o.learned, "steps": r.steps} for r, o in outcomes])
        entry["wall_s"] = check.clock() - t
        check.add(part, entry)


# --------------------------------------------------------------------------- --dry-run


def plan_items(scale: Scale, part: str) -> list[tuple[str, int, str, int]]:
    """``part``'s items as (what, training images, network, compiled programs), counted from the
    plan. Stall retries are not counted."""
    items, n_train = [], train_size(scale)
    if part == "bench":  # each config: a training and an evaluation program, a warm-up and the timed steps
        for d, b, k in scale.bench:
            items.append((f"{d} batch {b}" + (f" x {k} seeds" if k > 1 else ""), b * k * (scale.bench_steps + 1), "cifar10", 2))
    elif part in ("cifar", "mnist", "baselines"):
        for item in table_items(scale):
            if item.part == part:
                _, r = item_recipe(item, scale)
                spe = n_train // r.batch_size
                net = item.table if part != "baselines" else f"{item.table}/{item.variant}"
                items.append((f"{item.label}: {len(r.seeds)} seeds x {r.total_epochs(spe):g} epochs", r.total_steps(spe) * r.batch_size * len(r.seeds), net, 2))
    else:
        for key, _, _, recipe in study_variants(scale):
            r = study_recipe(recipe, scale, n_train // (scale.batch_size or recipe.batch_size))
            steps = r.total_steps(n_train // r.batch_size)
            items.append((f"{key}: {len(r.seeds)} seeds x {steps:,} steps", steps * r.batch_size * len(r.seeds), "cifar10" if r.model.in_channels == 3 else "mnist", 2))
    return items


def estimate(scale: Scale, parts: tuple[str, ...], budget_s: float, measure_steps: int = 2) -> list[str]:
    """The plan in words with a time estimate per part on this device: training images counted
    from the plan, divided by a rate measured here (``measure_steps`` fp32 steps of one seed of
    each network at the plan's batch size, nin_repro.bench), plus the measured compile time per
    program. Vmapped seeds train faster than one (bench's 5-seed row), so on a GPU the estimate
    errs long; bf16 is estimated at the fp32 rate."""
    from nin_repro.bench import bench_recipe
    from nin_repro.recipe import load_experiment

    measured = {}
    nets = ["cifar10", "mnist"] + ([f"{i.table}/{i.variant}" for i in table_items(scale) if i.part == "baselines"] if "baselines" in parts else [])
    for net in nets:  # a table's first row, or "table/variant"
        table, _, variant = net.partition("/")
        recipe = load_experiment(table).TABLE.variant(variant).recipe if variant else load_experiment(table).TABLE.variants[0].recipe
        recipe = dataclasses.replace(recipe, model=recipe.model.scaled(scale.width), batch_size=scale.batch_size or recipe.batch_size)
        r = next(r for r in bench_recipe(recipe, batch_size=recipe.batch_size, dtype="float32", steps=measure_steps) if r.what == "train")
        measured[net] = (r.img_per_s, r.compile_s)
    lines = [f"measured here: {net} network {ips:,.0f} img/s (one seed, fp32), compile {c:.1f} s" for net, (ips, c) in measured.items()]
    shares_left = sum(SHARES[p] for p in parts)
    for part in parts:
        sub, total = [], 0.0
        for what, images, net, programs in plan_items(scale, part):
            ips, compile_s = measured[net]
            s = programs * compile_s + images / ips
            total += s
            sub.append(f"    {what}: {images:,} training images -> {_fmt(s)}")
        share = budget_s * SHARES[part] / shares_left  # if every earlier part used its whole share
        shares_left, budget_s = shares_left - SHARES[part], budget_s - share
        verdict = "fits" if total <= share else f"would be cut (about {100 * share / total:.0f} % of it fits)"
        lines += [f"{part}: about {_fmt(total)}; its share of the budget {_fmt(share)} (+ what earlier parts leave): {verdict}", *sub]
    return lines


def _fmt(seconds: float) -> str:
    from nin_repro.results.stats import format_duration

    return format_duration(seconds)


# --------------------------------------------------------------------------- the page


def render(record: dict) -> str:
    prov = record["provenance"]
    dev = prov.get("device", {}) if isinstance(prov.get("device"), dict) else {}
    versions = prov.get("versions", {}) if isinstance(prov.get("versions"), dict) else {}
    lines = [
        "# check-gpu: the suite on this device, in one command",
        "",
        f"Device: {dev.get('kind', '?')} ({dev.get('platform', '?')}, {dev.get('count', '?')} device(s)); "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; commit `{prov.get('commit', 'unknown')}`; {prov.get('date', '?')}.",
        "",
        f"Budget {_fmt(record['budget_s'])} (shares: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in record["shares"].items()) + f"); wall time so far {_fmt(record['wall_s'])}.",
    ]
    if record["shortened"]:
        lines += ["", f"**Shortened plan (`--scale {record['scale']}`: {record['shortened']}): a check of the command, not evidence.**"]
    for part in record["parts"]:
        lines += ["", f"## {part['name']}: {part['status']}" + (f" (share {_fmt(part['allowance_s'])}, took {_fmt(part['wall_s'])})" if "wall_s" in part else ""), ""]
        lines += {"bench": _bench_lines, "init-study": _study_lines}.get(part["name"], _table_lines)(part["items"])
    cut = [f"{p['name']}: {i['label']}" for p in record["parts"] for i in p["items"] if i["status"] == "cut"]
    cut += [f"{p['name']}: not started" for p in record["parts"] if p["status"] == "not started"]
    lines += ["", "## What the budget cut", ""] + ([f"- {c}" for c in cut] or ["- nothing"])
    failed = [f"- {p['name']}: {i['label']}: {i['cut']}" for p in record["parts"] for i in p["items"] if i["status"] == "failed"]
    lines += ["", "## What failed", ""] + failed if failed else []
    return "\n".join(lines) + "\n"


def _bench_lines(items: list[dict]) -> list[str]:
    from nin_repro.bench import COLUMNS, BenchResult, summary_rows

    rows = [BenchResult(**r) for i in items if i["status"] == "finished" for r in i["results"]]
    columns = (*COLUMNS, "compute ceiling img/s", "memory ceiling img/s")

    def ceiling(x):
        return f"{x:,.0f}" if x else "n/a"

    cells = [[*cells, ceiling(r.compute_ceiling_img_s), ceiling(r.memory_ceiling_img_s)] for r, cells in zip(rows, summary_rows(rows))]
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + ["| " + " | ".join(c) + " |" for c in cells] if rows else []
    out += [f"- {i['label']}: {i['cut']}" for i in items if i["status"] != "finished"]
    if rows:
        out += ["", "Ceilings per image from the model config (nin_repro/bench.py): compute = dense peak / FLOPs, memory = HBM bandwidth / bytes; % ceiling: of the lower one."]
    return out or ["(nothing yet)"]


def _errors(seeds: list[dict]) -> str:
    from nin_repro.results.stats import format_mean_std

    errs = [s["test_error_pct"] for s in seeds if s.get("test_error_pct") is not None]
    return (format_mean_std(errs) + " (" + ", ".join(f"{e:.2f}" for e in errs) + ")") if errs else "—"


def _range(values: list, fmt: str) -> str:
    """``3`` when every seed got as far, ``1–3`` when they differ, ``0`` for none."""
    lo, hi = min(values, default=0), max(values, default=0)
    return format(lo, fmt) if lo == hi else f"{lo:{fmt}}–{hi:{fmt}}"


def _table_lines(items: list[dict]) -> list[str]:
    out = [
        "| row | status | epochs done / planned | stalls (all attempts) | seeds stalled on their last attempt | attempts per seed | final test error % (per seed) | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i in items:
        seeds = i.get("seeds", [])
        done = _range([s["epochs"] for s in seeds], "g")
        stalled = sum(1 for s in seeds if s.get("stalled"))
        attempts = ", ".join(str(s["attempts"]) for s in seeds) or "—"
        planned = f"{i['planned_epochs']:g}" if "planned_epochs" in i else "?"
        status = i["status"] + (f" ({i['cut']})" if i.get("cut") else "")
        stalls = sum(max(0, s["attempts"] - 1) + bool(s.get("stalled")) for s in seeds)  # a seed is retried only after a stall
        out.append(f"| {i['label']} | {status} | {done} / {planned} | {stalls} | {stalled}/{len(seeds)} | {attempts} | {_errors(seeds)} | {_fmt(i.get('wall_s', 0.0))} |")
    notes = [f"- {i['label']}: {i['recipe']}" for i in items if i.get("recipe")]
    return out + ([""] + notes if notes else []) + ["", "A cut row's errors are each seed's last evaluated epoch, not a final error; its last attempt's stall state is unknown."]


def _study_lines(items: list[dict]) -> list[str]:
    out = ["| variant | change | status | steps done / planned | stalled | learned | test error % (per seed) | wall |", "|---|---|---|---|---|---|---|---|"]
    for i in items:
        seeds = i.get("seeds", [])
        done = _range([s["steps"] for s in seeds], ",")
        stalled = sum(1 for s in seeds if s.get("stalled"))
        learned = sum(1 for s in seeds if s.get("learned"))
        status = i["status"] + (f" ({i['cut']})" if i.get("cut") else "")
        counts = f"{stalled}/{len(seeds)} | {learned}/{len(seeds)}"
        out.append(f"| `{i['label']}` | {i.get('change', '')} | {status} | {done} / {i.get('planned_steps', 0):,} | {counts} | {_errors(seeds)} | {_fmt(i.get('wall_s', 0.0))} |")
    return out + [
        "",
        "The stall check watches but does not stop a seed (as in `init-study`); *learned*: final test error below 50 %. "
        "Each variant's schedule is stretched to the horizon (`study.scaled`), so `pixel_mean_lr_low_first` has LR / 10 for the first 1/8 of it.",
    ]
