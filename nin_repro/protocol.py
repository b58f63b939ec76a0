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

MNIST (``then="continue"``, mnist.yaml then mnist_continued.yaml): phase 1 as above on 0-50k /
50k-60k, keeping the parameters of the best epoch (``MonitorBasedSaveBest``); then
``<run>/continued/`` continues them on all 60k without dropout (``MethodCost cost_from_X``), the LR
and momentum fixed at the best epoch's (``read_channel``), a fresh velocity, until the mean NLL on
50k-60k is at or below the best network's on 0-50k (``ChannelTarget``); its ``metrics.jsonl`` calls
that NLL ``test_loss``. The final parameters, evaluated on the test set, are the row's number
(saved to ``<run>/params``, as every run's).

SVHN (``then="resume"``, svhn.yaml then svhn2.yaml): phase 1 on every training image, early-stopped
on the dataset's own 6,000 validation images (pylearn2's ``splitted_train`` / ``valid``), keeping its
best parameters; then ``<run>/resumed/`` continues them at svhn2.yaml's fixed LR and momentum
(``Recipe.pylearn2_phase2``), a fresh velocity, the same dropout, early-stopped the same way
(``MonitorBased`` N 100, ``MonitorBasedSaveBest``): its best epoch's parameters, evaluated on the
test set, are the row's number.

Everything else is the row's recipe. The recipe is data: ``recipe.ValidationProtocol``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nin_repro import atomic
from nin_repro.errors import UsageError
from nin_repro.evaluate import EvalResult, EvalSet, evaluate
from nin_repro.recipe import Recipe
from nin_repro.train import PreparedData, RunResult, eval_program, load_params, save_params, train_and_evaluate_seeds

VALIDATION_DIR = "validation"
CONTINUED_DIR = "continued"
RESUMED_DIR = "resumed"
RECORD = "protocol.json"
FIXED_LR = ("exponential", 1.0, 0.0)  # a second phase has no update callback: the LR stays (a decay factor of 1)


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
    return dataclasses.replace(recipe, run_protocol=False, max_epochs=cap, epochs=None, pylearn2_phase2=())


def phase2_recipe(recipe: Recipe, best_epoch: int) -> Recipe:
    return dataclasses.replace(recipe, run_protocol=False, max_epochs=best_epoch, epochs=None)


def continued_recipe(recipe: Recipe, best_epoch: int, steps_per_epoch: int) -> Recipe:
    """mnist_continued.yaml: no dropout; the LR and the momentum the best epoch's monitor recorded
    (after ``best_epoch`` epochs of ExponentialDecay steps; MomentumAdjustor's value for that epoch),
    both fixed; the cap as phase 1's."""
    from nin_repro.baselines import momentum_at

    phase1 = phase1_recipe(recipe)  # the schedule phase 1 trained with (unscaled)
    lr = phase1.base_lr * phase1.lr_factor(best_epoch * steps_per_epoch, steps_per_epoch)
    momentum = float(momentum_at(recipe.momentum_adjust, recipe.momentum, (best_epoch - 1) * steps_per_epoch, steps_per_epoch, 1.0))
    m = recipe.model
    model = dataclasses.replace(
        m,
        maxout_convs=tuple(dataclasses.replace(c, include_prob=1.0, input_scale=1.0) for c in m.maxout_convs),
        maxout_dense=tuple(dataclasses.replace(d, include_prob=1.0, input_scale=1.0) for d in m.maxout_dense),
        softmax_include_prob=1.0,
        softmax_input_scale=1.0,
    )
    return dataclasses.replace(
        recipe, model=model, run_protocol=False, base_lr=lr, momentum=momentum, lr_decay=FIXED_LR, momentum_adjust=(), max_epochs=phase1.max_epochs, epochs=None
    )


def resumed_recipe(recipe: Recipe) -> Recipe:
    """svhn2.yaml: a new SGD at ``pylearn2_phase2``'s learning rate and momentum, both fixed (no
    extension, no callback), the same Dropout cost; the cap as phase 1's."""
    _, lr, momentum = recipe.pylearn2_phase2
    return dataclasses.replace(phase1_recipe(recipe), base_lr=lr, momentum=momentum, lr_decay=FIXED_LR, momentum_adjust=())


def _evaluate(recipe: Recipe, params, x, y) -> EvalResult:
    """``params`` (of ``recipe``'s network) on (x, y), with the evaluation its runs compiled."""
    return evaluate(eval_program(recipe), params, EvalSet.build(x, y, recipe.eval_batch_size))


def train_with_protocol(recipe: Recipe, data: PreparedData, run_dir: Path, seed: int, attempt: int = 0, **train_kwargs) -> tuple[RunResult, dict]:
    """Both phases for one seed; (the result to report, the protocol's record). A seed that stalls
    in phase 1 is returned as phase 1's result (the caller retries it). Re-running resumes: a
    finished phase 1 (its ``protocol.json``) is not trained again, and each phase resumes from its
    own checkpoints."""
    p, run_dir = recipe.protocol, Path(run_dir)
    valid_dir, record_path = run_dir / VALIDATION_DIR, run_dir / VALIDATION_DIR / RECORD
    n_all = len(data.x_train)
    if p.split == "dataset":
        if data.x_val is None:
            raise UsageError(
                f"--recipe protocol early-stops this row on its dataset's own validation split (SVHN's), and {data.source} has none: "
                "run it on the real dataset (not --smoke or the digits)"
            )
        n, x_val, y_val = n_all, data.x_val, data.y_val
        source = f"{data.source}; its validation split ({len(x_val)} images)"
    else:
        n = held_out(recipe, n_all)
        x_val, y_val = data.x_train[n:], data.y_train[n:]
        source = f"{data.source}; training images 0-{n - 1}, validation {n}-{n_all - 1}"
    best_dir = valid_dir / "best_params" if p.then in ("continue", "resume") else None
    if record_path.exists():
        record = json.loads(record_path.read_text())
    else:
        split = PreparedData(data.x_train[:n], data.y_train[:n], x_val, y_val, data.num_classes, source)
        phase1 = phase1_recipe(recipe)
        (first,) = train_and_evaluate_seeds(phase1, split, [valid_dir], [seed], attempts=[attempt], eval_every=1, early_stop=p.patience, save_best=best_dir, **train_kwargs)
        if first.stalled:
            return first, {}
        record = {
            "protocol": dataclasses.asdict(p),
            "train_images": n,
            "validation_images": len(y_val),
            "best_epoch": first.best_epoch,
            "best_validation_error": first.best_error,
            "epochs_trained": first.epochs,
            "stopped_early": first.epochs < phase1.max_epochs,
            "run_dir": str(valid_dir),
        }
        if p.then == "continue":  # ChannelTarget's target: the best network's mean NLL on the images it trained on
            record["target_nll"] = _evaluate(recipe, load_params(best_dir, recipe)[1], data.x_train[:n], data.y_train[:n]).loss
        atomic.write_json(record_path, record)
    if p.then == "retrain":
        (result,) = train_and_evaluate_seeds(phase2_recipe(recipe, record["best_epoch"]), data, [run_dir], [seed], attempts=[attempt], **train_kwargs)
        return result, record
    if p.then == "resume":
        resumed, best2 = resumed_recipe(recipe), run_dir / RESUMED_DIR / "best_params"
        (second,) = train_and_evaluate_seeds(
            resumed,
            split_of(data, x_val, y_val),
            [run_dir / RESUMED_DIR],
            [seed],
            attempts=[attempt],
            eval_every=1,
            early_stop=p.patience,
            save_best=best2,
            init_params=best_dir,
            **train_kwargs,
        )
        record = {**record, "resumed_best_epoch": second.best_epoch, "resumed_best_validation_error": second.best_error, "resumed_epochs": second.epochs}
        return _report(resumed, best2, data, run_dir, second), record
    # continue: all the training images; the held-out ones decide when to stop; the test set gives the number.
    continued = continued_recipe(recipe, record["best_epoch"], n // recipe.batch_size)
    (second,) = train_and_evaluate_seeds(
        continued,
        split_of(data, x_val, y_val),
        [run_dir / CONTINUED_DIR],
        [seed],
        attempts=[attempt],
        eval_every=1,
        target_loss=record["target_nll"],
        init_params=best_dir,
        **train_kwargs,
    )
    record = {**record, "continued_epochs": second.epochs, "continued_lr": continued.base_lr, "continued_momentum": continued.momentum}
    return _report(continued, run_dir / CONTINUED_DIR / "params", data, run_dir, second), record


def split_of(data: PreparedData, x_val, y_val) -> PreparedData:
    """Every training image trains; the validation images are the run's test set (its stop rule's)."""
    return PreparedData(data.x_train, data.y_train, x_val, y_val, data.num_classes, data.source)


def _report(recipe: Recipe, params_dir: Path, data: PreparedData, run_dir: Path, second: RunResult) -> RunResult:
    """The row's number: the chosen parameters on the test set, saved in ``run_dir/params``, where
    `eval` and the analyses read a seed's network."""
    _, params = load_params(params_dir, recipe)
    test = _evaluate(recipe, params, data.x_test, data.y_test)
    save_params(run_dir / "params", params)
    return dataclasses.replace(second, test_error=test.error, test_loss=test.loss, num_test=test.num_examples, run_dir=str(run_dir))


def describe(recipe: Recipe, runs: list[RunResult]) -> tuple[str, float]:
    """The row's schedule text and planned epochs for protocol runs: each seed's best validation
    epoch (and, continued, its epochs on all the images), which is that seed's plan."""
    done = [r for r in runs if not r.stalled]
    bests = [json.loads((Path(r.run_dir) / VALIDATION_DIR / RECORD).read_text())["best_epoch"] for r in done]
    text = f"{recipe.schedule} + validation protocol (best epochs {', '.join(map(str, bests))}"
    if recipe.protocol.then == "continue":
        text += f"; then continued {', '.join(f'{r.epochs:g}' for r in done)} epochs without dropout"
    if recipe.protocol.then == "resume":
        text += f"; then resumed at a fixed LR for {', '.join(f'{r.epochs:g}' for r in done)} epochs, its best epoch reported"
    return text + ")", float(max((r.epochs for r in done), default=0.0))
