"""`--recipe protocol`: a maxout baseline row trained the way its authors chose its length.

The default maxout rows train for the epoch count the pylearn2 README reports (CIFAR-10: 785
without, 474 with augmentation), so they need no validation phase. This recipe runs the phase that
found those counts (``cifar10_no_aug_valid.yaml`` / ``cifar10_valid.yaml``, README 3a/3b), then the
run the README describes:

1. ``<run>/validation/``: train on the first ``train_size`` training images (0-40k) and evaluate
   the rest (40k-50k) after every epoch; stop ``patience`` (100) epochs after the lowest validation
   error (``train._EarlyStop``). Its ``metrics.jsonl`` calls the validation error ``test_error``:
   the held-out images are that run's test set. ``protocol.json`` records the best epoch.
2. ``<run>/``: a fresh network (the same seed) on all the training images for the best epoch's
   count, the yaml's schedule unscaled (``EpochCounter max_epochs`` = that count); its test error
   is the row's.

Everything else is the row's recipe. The recipe is data: ``recipe.ValidationProtocol``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nin_repro import atomic
from nin_repro.errors import UsageError
from nin_repro.recipe import Recipe
from nin_repro.train import PreparedData, RunResult, train_and_evaluate_seeds

VALIDATION_DIR = "validation"
RECORD = "protocol.json"


def held_out(recipe: Recipe, num_train: int) -> int:
    """How many training images phase 1 trains on: the protocol's split, or the same fraction of
    a training set of another size (a smoke run, the shipped digits) [ours]. The first ones in the
    order the loader gives them: read from the original files, data_batch_1 to 5 as pylearn2's
    CIFAR10 reads them; through tensorflow-datasets, tfds's order [unverified to be the same]."""
    p = recipe.protocol
    n = p.train_size if num_train == p.of_total else round(num_train * p.train_size / p.of_total)
    if not 0 < n < num_train or n < recipe.batch_size:
        raise UsageError(
            f"--recipe protocol holds out {p.of_total - p.train_size} of {p.of_total} training images for validation; "
            f"{num_train} training images leave {n} to train on at batch size {recipe.batch_size}: use more training images"
        )
    return n


def phase1_recipe(recipe: Recipe) -> Recipe:
    """Phase 1 trains to the protocol's cap (``--epochs`` shortens it), the yaml's schedule unscaled."""
    cap = recipe.epochs if recipe.epochs is not None else recipe.protocol.max_epochs
    return dataclasses.replace(recipe, run_protocol=False, max_epochs=cap, epochs=None)


def phase2_recipe(recipe: Recipe, best_epoch: int) -> Recipe:
    return dataclasses.replace(recipe, run_protocol=False, max_epochs=best_epoch, epochs=None)


def train_with_protocol(recipe: Recipe, data: PreparedData, run_dir: Path, seed: int, attempt: int = 0, **train_kwargs) -> tuple[RunResult, dict]:
    """Both phases for one seed; (the result to report, the protocol's record). A seed that stalls
    in phase 1 is returned as phase 1's result (the caller retries it). Re-running resumes: a
    finished phase 1 (its ``protocol.json``) is not trained again, and each phase resumes from its
    own checkpoints."""
    run_dir = Path(run_dir)
    valid_dir, record_path = run_dir / VALIDATION_DIR, run_dir / VALIDATION_DIR / RECORD
    if record_path.exists():
        record = json.loads(record_path.read_text())
    else:
        n = held_out(recipe, len(data.x_train))
        n_all = len(data.x_train)
        source = f"{data.source}; training images 0-{n - 1}, validation {n}-{n_all - 1}"
        split = PreparedData(data.x_train[:n], data.y_train[:n], data.x_train[n:], data.y_train[n:], data.num_classes, source)
        phase1 = phase1_recipe(recipe)
        (first,) = train_and_evaluate_seeds(phase1, split, [valid_dir], [seed], attempts=[attempt], eval_every=1, early_stop=recipe.protocol.patience, **train_kwargs)
        if first.stalled:
            return first, {}
        record = {
            "protocol": dataclasses.asdict(recipe.protocol),
            "train_images": n,
            "validation_images": n_all - n,
            "best_epoch": first.best_epoch,
            "best_validation_error": first.best_error,
            "epochs_trained": first.epochs,
            "stopped_early": first.epochs < phase1.max_epochs,
            "run_dir": str(valid_dir),
        }
        atomic.write_json(record_path, record)
    (result,) = train_and_evaluate_seeds(phase2_recipe(recipe, record["best_epoch"]), data, [run_dir], [seed], attempts=[attempt], **train_kwargs)
    return result, record


def best_epochs(run_dirs: list[str]) -> list[int]:
    """Each finished protocol run's best validation epoch (the count its retrain trained for)."""
    return [json.loads((Path(d) / VALIDATION_DIR / RECORD).read_text())["best_epoch"] for d in run_dirs]
