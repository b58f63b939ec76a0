"""One paper table end to end: data -> preprocess -> train every variant x seed -> results table.

``reproduce(table, options)`` is what every table command calls; the CLI only parses options.
Run folders: ``<workdir>/<table>/<variant>/seed_<k>/`` (metrics.jsonl, params/, run.json; a run of
another recipe, e.g. shortened, in ``<variant>@<fingerprint>/``) and the
fitted preprocessing ``<workdir>/<table>/preprocess_<dataset>_<kind>.npz`` that run.json names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from nin_repro import atomic
from nin_repro.data import DATASETS, Dataset, load_dataset
from nin_repro.data.cache import sha256_file
from nin_repro.errors import DataError, UsageError
from nin_repro.figures import read_metrics
from nin_repro.preprocess import Preprocessor, fit_preprocessor
from nin_repro.provenance import provenance
from nin_repro.recipe import SCHEDULES, Recipe, Table, ValidationProtocol, Variant, smoke_recipe
from nin_repro.report import write_report
from nin_repro.results.stats import VariantResult, first_epoch_at
from nin_repro.results.write import write_table
from nin_repro.train import PreparedData, Progress, RunResult, train_and_evaluate_seeds

# --smoke: synthetic but learnable data in the table's image shape (the recipe's rewrite is
# recipe.smoke_recipe, or the table's own Table.smoke).
SMOKE_TRAIN, SMOKE_TEST = 1536, 500  # 500 is not a multiple of the eval batch: padding is exercised
SMOKE_SHIFT, SMOKE_NOISE, SMOKE_CUE = 2, 1.0, 0.5  # easier than make_synthetic's default, so a few steps suffice


@dataclasses.dataclass(frozen=True)
class Options:
    results_dir: Path = Path("results")
    workdir: Path = Path("runs")
    data_dir: Path | None = None
    cache_dir: Path | None = None
    tfds_data_dir: Path | None = None
    download: bool = True
    seeds: int | None = None  # K -> seeds 0..K-1; None = the recipe's
    epochs: float | None = None
    batch_size: int | None = None
    schedule: str | None = None  # --recipe paper|caffe|plateau|zoo
    warmup_epochs: float | None = None
    smoke: bool = False
    baselines: bool = False  # also the tables' baseline rows (Variant.baseline) when no --rows are named
    overrides: tuple[str, ...] = ()  # --set key=value, applied last
    checkpoint_every_min: float = 10.0
    # Train a variant's seeds at once, one vmapped program. None: on a GPU/TPU with several seeds;
    # off on XLA:CPU. There the K seeds' gradients run seed by seed in one program (train.grads_seed_by_seed;
    # vmapped convs measured 0.15x of one seed's img/s): MNIST, batch 128, 2 shared cores, 4 seeds
    # measured 0.87x (best step) to 1.11x (median step) of one seed per image, no faster, so seeds
    # run one after another (and one run's checkpoints and health checks stay per seed).
    parallel_seeds: bool | None = None

    def validate(self) -> None:
        if self.seeds is not None and self.seeds <= 0:
            raise UsageError(f"--seeds must be a positive number of seeds, got {self.seeds}")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise UsageError(f"--epochs must be positive, got {self.epochs}")
        if self.batch_size is not None and self.batch_size <= 0:
            raise UsageError(f"--batch-size must be positive, got {self.batch_size}")
        if self.schedule is not None and self.schedule not in RECIPES:
            raise UsageError(f"unknown --recipe {self.schedule!r}: choose one of {', '.join(RECIPES)}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise UsageError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs}")
        if self.checkpoint_every_min < 0:
            raise UsageError(f"--checkpoint-every must be >= 0 minutes, got {self.checkpoint_every_min}")
        for assignment in self.overrides:
            parse_assignment(assignment)


def parse_assignment(assignment: str) -> tuple[list[str], str]:
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {assignment!r}: expected key=value, e.g. --set base_lr=0.05 or --set model.head=fc")
    return key.strip().split("."), raw.strip()


def _field_types(cls) -> dict:
    import typing

    return typing.get_type_hints(cls)


def _coerce(raw: str, annotation, what: str):
    """Parse ``raw`` as the field's declared type (``float | None``, ``tuple[int, ...]`` ...)."""
    import types
    import typing

    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if raw.strip().lower() == "none" and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
    origin = typing.get_origin(annotation) or annotation
    name = getattr(origin, "__name__", str(origin))
    try:
        if annotation is bool:
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise ValueError(raw)
        if annotation is int:
            value = float(raw)
            if not value.is_integer():
                raise ValueError(raw)
            return int(value)
        if annotation is float:
            return float(raw)
        if origin is tuple:
            value = json.loads(raw)
            if not isinstance(value, list):
                raise ValueError(raw)
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)
        return raw
    except ValueError:
        raise UsageError(f"--set {what}={raw}: not a valid {name}") from None


def apply_set(recipe: Recipe, assignments: tuple[str, ...]) -> Recipe:
    """``--set key=value`` on any recipe field; ``model.<field>`` reaches the network config."""
    for assignment in assignments:
        path, raw = parse_assignment(assignment)
        what = ".".join(path)
        if len(path) == 1 and path[0] != "model":
            fields = {f.name for f in dataclasses.fields(recipe)}
            if path[0] not in fields:
                raise UsageError(f"--set {what}: no such recipe field; fields: {', '.join(sorted(fields))}")
            recipe = dataclasses.replace(recipe, **{path[0]: _coerce(raw, _field_types(Recipe)[path[0]], what)})
        elif len(path) == 2 and path[0] == "model":
            fields = {f.name for f in dataclasses.fields(recipe.model)} - {"blocks", "convs"}
            if path[1] not in fields:
                raise UsageError(f"--set {what}: no such model field; fields: {', '.join(sorted(fields))}")
            try:
                model = dataclasses.replace(recipe.model, **{path[1]: _coerce(raw, _field_types(type(recipe.model))[path[1]], what)})
            except ValueError as e:
                raise UsageError(f"--set {what}={raw}: {e}") from None
            recipe = dataclasses.replace(recipe, model=model)
        else:
            raise UsageError(f"--set {what}: use a recipe field (e.g. base_lr) or model.<field> (e.g. model.head)")
    return recipe


def apply_options(recipe: Recipe, opts: Options, smoke: Callable[[Recipe], Recipe] = smoke_recipe) -> tuple[Recipe, tuple[str, ...]]:
    """The recipe a run uses, and the overrides to record (and mark in the row). With --smoke,
    ``smoke`` (the table's ``Table.smoke``) rewrites the recipe first; the options apply on top."""
    if opts.smoke:
        recipe = smoke(recipe)
    changes: dict = {}
    if opts.seeds is not None:
        changes["seeds"] = tuple(range(opts.seeds))
    if opts.epochs is not None:
        changes["epochs"] = float(opts.epochs)
    if opts.batch_size is not None and opts.batch_size != recipe.batch_size:
        changes["batch_size"] = opts.batch_size
    if opts.schedule == "zoo":
        changes.update(zoo_changes(recipe))
    elif opts.schedule == "protocol":
        if recipe.protocol is None:
            raise UsageError(
                "--recipe protocol is the maxout authors' validation protocol (early stopping on held-out images, then a second phase); "
                "only rows that have one take it (the maxout rows of cifar10, svhn and mnist): choose them with --rows maxout_dropout (cifar10: also maxout_dropout_aug)"
            )
        changes["run_protocol"] = True
    elif opts.schedule is not None and opts.schedule != recipe.schedule and not (opts.schedule == "paper" and recipe.schedule == "pylearn2"):
        # --recipe paper (the default) is the published recipe; for the maxout baselines that is pylearn2's.
        changes["schedule"] = opts.schedule
    if opts.warmup_epochs is not None and opts.warmup_epochs != recipe.warmup_epochs:
        changes["warmup_epochs"] = opts.warmup_epochs
    new = apply_set(dataclasses.replace(recipe, **changes), opts.overrides)
    recorded = (
        tuple(f"{k}={v}" for k, v in changes.items() if k in ("batch_size", "schedule", "warmup_epochs") and not opts.smoke and not (k == "schedule" and opts.schedule == "zoo"))
        + (("recipe=zoo (Caffe solver, average pool2)",) if opts.schedule == "zoo" else ())
        + ((f"recipe=protocol (the authors' validation phase with early stopping, then {PROTOCOL_THEN[recipe.protocol.then]})",) if opts.schedule == "protocol" else ())
        + tuple(opts.overrides)
    )
    return new, recorded


# What follows the validation phase of --recipe protocol, in a row's words (nin_repro.protocol).
PROTOCOL_THEN = {
    "retrain": "a retrain on all training images for the best epoch count",
    "continue": "mnist_continued.yaml to the NLL target",
    "resume": "svhn2.yaml from the best model",
}

# --recipe: an LR schedule, or "zoo": Min Lin's Caffe model-zoo configuration as a whole (the Caffe
# solver and the zoo prototxt's average pooling after block 2; docs/paper-notes.md, "Architecture").
RECIPES = (*SCHEDULES, "zoo", "protocol")


def zoo_changes(recipe: Recipe) -> dict:
    from nin_repro.models import NINConfig

    if not isinstance(recipe.model, NINConfig) or len(recipe.model.blocks) < 2:
        raise UsageError("--recipe zoo is the Caffe model-zoo NIN: it needs an NIN with at least two mlpconv blocks")
    blocks = list(recipe.model.blocks)
    blocks[1] = dataclasses.replace(blocks[1], pool="avg")
    return {"schedule": "caffe", "model": dataclasses.replace(recipe.model, blocks=tuple(blocks))}


def smoke_train_size(num_classes: int) -> int:
    return max(SMOKE_TRAIN, 40 * num_classes)  # CIFAR-100 needs a few dozen images per class


def smoke_dataset(recipe: Recipe) -> Dataset:
    """The synthetic data of a --smoke run of ``recipe``, in its dataset's image shape."""
    from nin_repro.data.synthetic import make_synthetic

    info = DATASETS.get(recipe.dataset)
    classes = recipe.model.num_classes
    return make_synthetic(
        f"synthetic-{recipe.dataset}",
        num_train=smoke_train_size(classes),
        num_test=SMOKE_TEST,
        image_shape=info.image_shape if info else (28, 28, 1),
        num_classes=classes,
        seed=0,
        max_shift=SMOKE_SHIFT,
        noise=SMOKE_NOISE,
        brightness_cue=SMOKE_CUE,
    )


def load_table_data(recipe: Recipe, opts: Options) -> Dataset:
    if opts.smoke:
        return smoke_dataset(recipe)
    from nin_repro.data.digits import NAMES as DIGITS
    from nin_repro.data.digits import load_digits

    if recipe.dataset in DIGITS:
        return load_digits(recipe.dataset)
    return load_dataset(recipe.dataset, data_dir=opts.data_dir, cache_dir=opts.cache_dir, download=opts.download, tfds_data_dir=opts.tfds_data_dir)


def prepare(ds: Dataset, recipe: Recipe, table_dir: Path) -> tuple[PreparedData, Path]:
    """Fit the preprocessing on the training images, apply it to both splits, save it."""
    if not len(ds.x_train) or not len(ds.x_test):
        raise DataError(f"{ds.name} ({ds.source}) has {len(ds.x_train)} training and {len(ds.x_test)} test images: a table needs both")
    pre = fit_preprocessor(recipe.preprocess, ds.x_train)
    path = table_dir / f"preprocess_{ds.name}_{recipe.preprocess}.npz"
    pre.save(path)
    data = PreparedData(pre.apply(ds.x_train), ds.y_train, pre.apply(ds.x_test), ds.y_test, ds.num_classes, ds.source)
    if ds.x_val is not None:  # SVHN's validation images (--recipe protocol early-stops on them)
        data = dataclasses.replace(data, x_val=pre.apply(ds.x_val), y_val=ds.y_val)
    return data, path


# Fields that do not change what a seed trains: a run that differs from the table's recipe only in
# these is still the table's recipe (the dataset and the length are named on their own).
NOT_THE_RECIPE = ("seeds", "epochs", "eval_batch_size", "dataset", "attempts", "dead_steps", "stall_epochs", "stall_tolerance", "ours")


def recipe_changes(recipe: Recipe, original: Recipe, compact: bool = False) -> list[str]:
    """``field=value`` for each recipe field (``model.field`` for the network) a run changed.
    ``compact``: a field changed in several blocks is one item, ``model.blocks[*].init_std=None``
    (values that differ per block joined by `` / ``)."""
    out = []
    for f in dataclasses.fields(Recipe):
        new, old = getattr(recipe, f.name), getattr(original, f.name)
        if f.name in NOT_THE_RECIPE or new == old:
            continue
        out += _differences(f.name, new, old)
    if not compact:
        return out
    grouped: dict[str, list[str]] = {}
    for item in out:
        name, value = item.split("=", 1)
        grouped.setdefault(re.sub(r"\[\d+\]", "[*]", name), []).append(value)
    return [f"{name}={' / '.join(dict.fromkeys(values))}" for name, values in grouped.items()]


def _differences(name: str, new, old) -> list[str]:
    """``name=value`` where two values differ, descending into dataclasses and same-length tuples
    of them (``model.blocks[1].pool=avg``, not the whole network)."""
    if new == old:
        return []
    if dataclasses.is_dataclass(new) and type(new) is type(old):
        return [d for m in dataclasses.fields(new) for d in _differences(f"{name}.{m.name}", getattr(new, m.name), getattr(old, m.name))]
    if isinstance(new, tuple) and isinstance(old, tuple) and len(new) == len(old) and any(dataclasses.is_dataclass(x) for x in new):
        return [d for i, (a, b) in enumerate(zip(new, old)) for d in _differences(f"{name}[{i}]", a, b)]
    return [f"{name}={new}"]


def shortened_label(recipe: Recipe, planned_epochs: float, smoke: bool, original: Recipe) -> str | None:
    if smoke:  # every field the smoke rewrite (and any option) changed, by name
        return f"smoke: synthetic data, {recipe.epochs:g} epochs of {smoke_train_size(recipe.model.num_classes)} images; " + ", ".join(
            recipe_changes(recipe, original, compact=True)
        )
    parts = []
    changed = recipe_changes(recipe, original)
    if changed:
        parts.append("not the table's recipe: " + ", ".join(changed))
    if recipe.dataset != original.dataset:
        parts.append(f"proxy data: {recipe.dataset} instead of {original.dataset}, not a reproduction of the paper's number")
    if recipe.epochs is not None and recipe.epochs < planned_epochs - 1e-9:
        parts.append(f"{recipe.epochs:g} of {planned_epochs:g} epochs")
    return "shortened: " + "; ".join(parts) if parts else None


def reproduce(
    table: Table, opts: Options, progress: Progress | None = None, variants: tuple[str, ...] | None = None, seeds: tuple[int, ...] | None = None, write: bool = True
) -> tuple[Path, Path] | None:
    """Train every variant of ``table`` for every seed and write its results table. ``variants``
    (``--rows``), ``seeds``: train only those (the recipe, and so the run folders and checkpoints,
    stay the table's); a variant not run shows as "not run". No ``variants``: the table's rows,
    its baseline rows only with ``opts.baselines``. ``write=False``: train only, no table
    (one job of ``reproduce-all``)."""
    opts.validate()
    table_dir = Path(opts.workdir) / ("smoke" if opts.smoke else "") / table.name
    check_folders(opts, table_dir)
    variants = variants or table.rows_to_run(opts.baselines)
    chosen = [v for v in table.variants if v.key in variants]
    for variant in chosen:  # every recipe valid (dataset names too) before any training
        check_dataset(apply_options(variant.recipe, opts, table.smoke)[0])
    prepared: dict[tuple[str, str], tuple[PreparedData, Path]] = {}
    results: list[VariantResult] = []
    for variant in chosen:
        recipe, overrides = apply_options(variant.recipe, opts, table.smoke)
        key = (recipe.dataset, recipe.preprocess)
        if key not in prepared:
            prepared[key] = prepare(load_table_data(recipe, opts), recipe, table_dir)
        data, pre_path = prepared[key]
        if recipe.batch_size > len(data.x_train):
            raise UsageError(f"--batch-size {recipe.batch_size} is larger than the training set ({len(data.x_train)} images)")
        steps_per_epoch = len(data.x_train) // recipe.batch_size
        planned = recipe.schedule_epochs(steps_per_epoch)  # the length of the schedule this run follows
        pre_ref = {"path": str(pre_path.resolve()), "sha256": sha256_file(pre_path)}
        histories = train_with_retries(
            table,
            variant,
            recipe,
            data,
            pre_ref,
            variant_dir(table_dir, variant, recipe, apply_options(variant.recipe, Options(smoke=opts.smoke), table.smoke)[0]),
            opts,
            overrides,
            progress,
            only_seeds=seeds,
        )
        if not write:
            continue
        runs = [h[-1] for h in histories]
        schedule = recipe.schedule
        if recipe.run_protocol:  # each seed's length came from its own validation phase
            from nin_repro.protocol import describe

            schedule, planned = describe(recipe, runs)
        results.append(
            VariantResult.from_runs(
                variant,
                runs,
                histories=histories,
                schedule=schedule,
                planned_epochs=planned,
                shortened=shortened_label(recipe, planned, opts.smoke, variant.recipe),
                data_source=data.source,
                overrides=overrides,
                epochs_to_target=[first_epoch_at(read_metrics(r.run_dir), table.target_error_pct) for r in runs if not r.stalled] if table.target_error_pct is not None else (),
            )
        )
    if not write:
        return None
    # A lock so that two table commands finishing at once don't interleave their summaries.
    with _results_lock(Path(opts.results_dir)):
        md, js = write_table(table, results, Path(opts.results_dir), smoke=opts.smoke, some_rows=len(chosen) < len(table.variants))
        write_report(md.parent)
    return md, js


def stalled_seeds(table_json: Path) -> list[str]:
    """ "<variant>: seed(s) 1, 2" for each variant of a written table with seeds that stalled every time."""
    variants = json.loads(Path(table_json).read_text())["variants"]
    return [f"{v['key']}: seed(s) {', '.join(map(str, v['stalled_seeds']))}" for v in variants if v.get("stalled_seeds")]


def check_folders(opts: Options, table_dir: Path) -> None:
    """Fail before hours of training, not after: both folders writable, and a --workdir path that
    orbax can use (tensorstore reads '[' and ']' in a checkpoint path as a pattern)."""
    if any(c in str(Path(opts.workdir).resolve()) for c in "[]"):
        raise UsageError(f"--workdir {opts.workdir} contains '[' or ']', which the checkpoint library reads as a pattern: choose a path without them")
    for what, folder in (("--results-dir", Path(opts.results_dir)), ("--workdir", table_dir)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise UsageError(f"cannot write to {what} {folder}: {e.strerror or e} (choose a folder you can write)") from None


def check_dataset(recipe: Recipe) -> None:
    """A dataset name is one we can load (also keeps --set dataset=../x from naming paths)."""
    from nin_repro.data.digits import NAMES as DIGITS

    known = (*DATASETS, *DIGITS, "synthetic")
    if recipe.dataset not in known:
        raise UsageError(f"unknown dataset {recipe.dataset!r}: choose one of {', '.join(known)}")


def parallel_seeds(opts: Options, recipe: Recipe) -> bool:
    """Whether ``recipe``'s seeds train at once (see ``Options.parallel_seeds``)."""
    if len(recipe.seeds) < 2:
        return False
    wanted = opts.parallel_seeds
    if wanted is None:
        import jax

        wanted = jax.default_backend() != "cpu"
    if wanted and recipe.seeds_pick_their_length:
        print(f"note: {'the plateau schedule' if recipe.schedule == 'plateau' else '--recipe protocol'} trains the seeds one at a time", file=sys.stderr)
        return False
    return wanted


def variant_dir(table_dir: Path, variant: Variant, recipe: Recipe, base: Recipe) -> Path:
    """Where a variant's seeds are trained. A folder belongs to one recipe: the table's own recipe
    (with --smoke: the smoke recipe) trains in ``<variant>/``; any other (--epochs, --set,
    --recipe ...) in ``<variant>@<fingerprint>/``, so it never overwrites, or is cited as, the
    other's runs. ``base``: the table's own recipe of the variant (with --smoke, after the table's
    smoke rewrite). Fields that do not change what a seed trains (``NOT_THE_RECIPE``: the seeds,
    the number of attempts, the stall thresholds) do not matter."""
    from nin_repro.checkpoint import recipe_fingerprint

    same = not recipe_changes(recipe, base) and (recipe.epochs, recipe.dataset) == (base.epochs, base.dataset)
    return Path(table_dir) / (variant.key if same else f"{variant.key}@{recipe_fingerprint(dataclasses.replace(recipe, seeds=(0,)))[:8]}")


def seed_dir(variant_dir: Path, seed: int, attempt: int = 0) -> Path:
    """A seed's run folder; every retry of a stalled seed gets a folder of its own."""
    return Path(variant_dir) / (f"seed_{seed}" if attempt == 0 else f"seed_{seed}-attempt_{attempt}")


def train_with_retries(
    table: Table, variant: Variant, recipe: Recipe, data: PreparedData, pre_ref: dict, variant_dir: Path, opts: Options, overrides=(), progress=None, only_seeds=None
) -> list[list[RunResult]]:
    """Every seed of ``recipe``, each retried from a fresh initialisation (``train.run_key(seed, a)``)
    while it stalls, ``recipe.attempts`` tries in all. Seeds train together or one at a time as
    ``parallel_seeds`` says; the stalled ones of a round are retried together in the next round,
    so one stalled seed never stops the others. Returns each seed's attempts, in order (the last
    one is the seed's result: finished, or stalled on its final try). ``only_seeds``: those of
    ``recipe.seeds`` only (grouped as the whole table run would group them alone)."""
    seeds = [seed for seed in recipe.seeds if only_seeds is None or seed in only_seeds]
    histories: dict[int, list[RunResult]] = {seed: [] for seed in seeds}
    pending, attempt = seeds, 0
    while pending and attempt < recipe.attempts:
        groups = [pending] if parallel_seeds(opts, recipe) and len(pending) > 1 else [[seed] for seed in pending]
        for group in groups:
            dirs = [seed_dir(variant_dir, seed, attempt) for seed in group]
            for seed, result in zip(group, train_seeds(table, variant, recipe, data, pre_ref, dirs, group, opts, overrides, progress, attempt, histories)):
                histories[seed].append(result)
        pending = [seed for seed in pending if histories[seed][-1].stalled]
        attempt += 1
        if pending and attempt < recipe.attempts:
            print(f"note: {variant.key}: seed(s) {', '.join(map(str, pending))} stalled; retrying from a fresh initialisation (attempt {attempt})", file=sys.stderr)
    return [histories[seed] for seed in seeds]


def train_seeds(
    table: Table,
    variant: Variant,
    recipe: Recipe,
    data: PreparedData,
    pre_ref: dict,
    run_dirs: list[Path],
    seeds: list[int],
    opts: Options,
    overrides=(),
    progress=None,
    attempt: int = 0,
    histories: dict[int, list[RunResult]] | None = None,
) -> list[RunResult]:
    """Seeds of one variant trained together (one seed: alone), then ``run_dir/run.json`` for
    each (what `eval` and the analysis commands read back), with the seed's attempts so far."""
    from nin_repro.train import run_key_text

    train_kwargs = dict(progress=progress, checkpoint_every_s=60 * opts.checkpoint_every_min, run_info={"preprocess": pre_ref})
    if recipe.run_protocol:  # one seed at a time (parallel_seeds)
        from nin_repro.protocol import train_with_protocol

        (seed,) = seeds
        result, protocol_record = train_with_protocol(recipe, data, run_dirs[0], seed, attempt, **train_kwargs)
        results, protocols = [result], [protocol_record]
    else:
        results = train_and_evaluate_seeds(recipe, data, run_dirs, seeds, attempts=[attempt] * len(seeds), **train_kwargs)
        protocols = [None] * len(seeds)
    for run_dir, seed, result, protocol_record in zip(run_dirs, seeds, results, protocols):
        earlier = (histories or {}).get(seed, [])
        atomic.write_json(
            run_dir / "run.json",
            {
                "table": table.name,
                "variant": variant.key,
                "method": variant.method,
                "seed": seed,
                "attempt": attempt,
                "key": run_key_text(seed, attempt),
                "attempts": [
                    {"attempt": r.attempt, "key": run_key_text(seed, r.attempt), "run_dir": r.run_dir, "ended": r.stalled or "finished", "steps": r.steps}
                    for r in [*earlier, result]
                ],
                "result": dataclasses.asdict(result),
                **({"protocol": protocol_record} if protocol_record is not None else {}),
                "recipe": dataclasses.asdict(recipe),
                "overrides": list(overrides),
                "smoke": opts.smoke,
                "data_source": data.source,
                "preprocess": pre_ref,
                "provenance": provenance(),
            },
        )
    return results


def train_seed(
    table: Table, variant: Variant, recipe: Recipe, data: PreparedData, pre_ref: dict, run_dir: Path, seed: int, opts: Options, overrides=(), progress=None
) -> RunResult:
    """One seed of one variant: train, then write ``run_dir/run.json``."""
    return train_seeds(table, variant, recipe, data, pre_ref, [run_dir], [seed], opts, overrides, progress)[0]


def train_variant(table: Table, variant_key: str, opts: Options, seed: int = 0, progress=None) -> Path:
    """Train one seed of one variant of ``table`` into ``<workdir>/<table>/<variant>/seed_<seed>``
    (no results table): the short model an analysis command trains when it finds no saved run."""
    variant = table.variant(variant_key)
    recipe, overrides = apply_options(variant.recipe, opts, table.smoke)
    table_dir = Path(opts.workdir) / ("smoke" if opts.smoke else "") / table.name
    data, pre_path = prepare(load_table_data(recipe, opts), recipe, table_dir)
    pre_ref = {"path": str(pre_path.resolve()), "sha256": sha256_file(pre_path)}
    run_dir = table_dir / variant.key / f"seed_{seed}"  # where the analysis commands look for it
    train_seed(table, variant, recipe, data, pre_ref, run_dir, seed, opts, overrides, progress)
    return run_dir


@contextlib.contextmanager
def _results_lock(results_dir: Path):
    import fcntl

    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# Training-set sizes of the paper's splits, for estimates made before any data is loaded.
TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 598_388, "mnist": 60_000, "digits5k": 4_000, "digits5k_rgb32": 4_000}


def preflight(table: Table, opts: Options) -> None:
    """Before anything slow: every dataset the table needs is cached, in --data-dir, or can be
    downloaded (no data and no internet fails here in one line, within seconds)."""
    from nin_repro.data import preflight as preflight_dataset

    for dataset in dict.fromkeys(apply_options(v.recipe, opts, table.smoke)[0].dataset for v in table.variants):
        preflight_dataset(dataset, data_dir=opts.data_dir, cache_dir=opts.cache_dir, download=opts.download, tfds_data_dir=opts.tfds_data_dir)


def on_cpu() -> bool:
    import jax

    return jax.default_backend() == "cpu"


def training_images(table: Table, opts: Options) -> int:
    """Training images a table run processes, all variants and seeds (counted, not measured)."""
    total = 0
    for variant in table.variants:
        recipe, _ = apply_options(variant.recipe, opts, table.smoke)
        n = TRAIN_SIZES.get(recipe.dataset, 50_000)
        total += recipe.total_steps(max(1, n // recipe.batch_size)) * recipe.batch_size * len(recipe.seeds)
    return total


def load_run(run_dir: Path) -> tuple[dict, Recipe, Preprocessor]:
    """What a saved run needs for re-evaluation: its record, recipe and fitted preprocessing."""
    from nin_repro.models import config_from_dict

    path = Path(run_dir) / "run.json"
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise TypeError(f"a JSON object expected, got {type(record).__name__}")
        r = dict(record["recipe"])
        # Records written before the "pylearn2" schedule existed lack its fields; their runs used none of them.
        # Those written before --recipe protocol existed, its two.
        for name, default in (("lr_decay", ()), ("momentum_adjust", ()), ("max_epochs", None), ("pylearn2_phase2", ()), ("protocol", None), ("run_protocol", False)):
            r.setdefault(name, default)
        _require_fields(r, Recipe, "recipe")
        m = r.pop("model")
        tuples = {f.name for f in dataclasses.fields(Recipe) if "tuple" in str(f.type)}
        r = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if k in tuples and v is not None else v) for k, v in r.items()}
        if r["protocol"] is not None:
            r["protocol"] = ValidationProtocol(**r["protocol"])
        model = config_from_dict(m)
        _require_fields(dict(m), type(model), "recipe.model")
        recipe = Recipe(model=model, **r)
        pre_path = record["preprocess"]["path"]
        if not isinstance(pre_path, str):
            raise TypeError(f"preprocess.path must be a path, got {pre_path!r}")
        if not isinstance(record.get("smoke", False), bool):
            raise TypeError(f"smoke must be true or false, got {record['smoke']!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise UsageError(f"{path} is not a readable run record ({' '.join(what.split())}); run the table command again to rewrite it") from None
    expected = record["preprocess"].get("sha256")
    if expected and Path(pre_path).is_file() and sha256_file(Path(pre_path)) != expected:
        raise UsageError(
            f"{pre_path} changed since {run_dir} was trained (sha256 differs from run.json's): its numbers would not be the run's; "
            "train the run again, or restore the preprocessing file"
        )
    pre = Preprocessor.load(pre_path)
    return record, recipe, pre


def _require_fields(d: dict, cls, what: str) -> None:
    """Every field of dataclass ``cls`` is in ``d``: a record's missing field must not become the
    default silently (the run would be re-evaluated as something it was not)."""
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in d]
    if missing:
        raise KeyError(", ".join(f"{what}.{name}" for name in missing))


def recorded_test_error(record: dict, run_dir: Path) -> float:
    """run.json's ``result.test_error``, a fraction in [0, 1], or a one-line UsageError."""
    try:
        value = record["result"]["test_error"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise TypeError(f"result.test_error must be a fraction in [0, 1], got {value!r}")
    except (KeyError, TypeError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise UsageError(f"{Path(run_dir) / 'run.json'} is not a readable run record ({what}); run the table command again to rewrite it") from None
    return float(value)


def reevaluate(run_dir: Path, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test error of a saved run's final parameters on (x_test, y_test) with its saved preprocessing."""
    from nin_repro.evaluate import EvalSet, evaluate, make_eval_fn
    from nin_repro.train import load_params, logits_fn_for

    _, recipe, pre = load_run(run_dir)
    graphdef, params = load_params(Path(run_dir) / "params", recipe)
    test = EvalSet.build(pre.apply(x_test), y_test, recipe.eval_batch_size)
    return evaluate(make_eval_fn(logits_fn_for(graphdef)), params, test).error


@dataclasses.dataclass(frozen=True)
class RunCheck:
    """A saved run re-evaluated by ``check_run`` (also written to ``path``, the run's eval.json)."""

    test_error: float
    recorded_test_error: float
    num_test: int
    data_source: str
    path: Path

    @property
    def equal(self) -> bool:
        return self.test_error == self.recorded_test_error


def check_run(run_dir: Path, *, data_dir: Path | None = None, cache_dir: Path | None = None, download: bool = True) -> RunCheck:
    """Re-evaluate a finished run's final parameters on its test set with its saved preprocessing,
    compare with the test error the run recorded, and write both (with provenance) to
    ``run_dir/eval.json``."""
    if not (run_dir / "run.json").is_file() or not (run_dir / "params").is_dir():
        raise UsageError(f"{run_dir} is not a finished run folder (needs run.json and params/)")
    record, recipe, _ = load_run(run_dir)
    recorded = recorded_test_error(record, run_dir)  # checked before the data and the parameters are read
    ds = load_table_data(recipe, Options(smoke=bool(record.get("smoke")), data_dir=data_dir, cache_dir=cache_dir, download=download))
    error = reevaluate(run_dir, ds.x_test, ds.y_test)
    atomic.write_json(
        run_dir / "eval.json",
        {"test_error": error, "recorded_test_error": recorded, "equal": error == recorded, "num_test": len(ds.x_test), "data_source": ds.source, "provenance": provenance()},
    )
    return RunCheck(error, recorded, len(ds.x_test), ds.source, run_dir / "eval.json")
