"""--recipe protocol (nin_repro/protocol.py): the maxout authors' validation phase, then the retrain."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from nin_repro.errors import UsageError
from nin_repro.evaluate import EvalResult
from nin_repro.protocol import held_out, train_with_protocol
from nin_repro.recipe import ValidationProtocol, load_experiment
from nin_repro.reproduce import Options, apply_options
from nin_repro.train import _EarlyStop, load_params
from tests.test_baselines import TINY_MAXOUT
from tests.test_train import tiny_data

pytestmark = pytest.mark.usefixtures("tiny_runs_compile_at_o0")  # tiny runs: conftest.py


def test_early_stopping_is_pylearn2s_monitor_based_with_prop_decrease_0():
    """Worked by hand from termination_criteria.MonitorBased (countdown N = 3, reset only by a value
    strictly below the best): the countdown after each epoch is 3 3 2 1 3 2 1 0, so training stops
    after epoch 8; the best (MonitorBasedSaveBest, strictly lower) is epoch 5. A tie is no gain."""
    stop = _EarlyStop(patience=3)
    done = []
    for epoch, error in enumerate([0.5, 0.4, 0.4, 0.45, 0.3, 0.35, 0.31, 0.32], start=1):
        stop.observe(epoch, EvalResult(error, 0.0, 100, round(100 * error)))
        done.append(stop.done)
    assert done == [False] * 7 + [True]
    assert (stop.best_epoch, stop.best) == (5, 0.3)


def saved(recipe, params_dir):
    """The parameters saved in ``params_dir``."""
    return load_params(params_dir, recipe)[1]


def tiny_protocol_recipe(**protocol):
    """CIFAR-10's maxout recipe on the tiny net: a 4/5 split, patience 2, a cap of 12 epochs."""
    base = load_experiment("baselines_cifar10").MAXOUT_RECIPE
    spec = ValidationProtocol(**{"train_size": 4, "of_total": 5, "patience": 2, "max_epochs": 12, **protocol})
    tiny = dict(dataset="synthetic", model=TINY_MAXOUT, batch_size=8, seeds=(0,), eval_batch_size=7, base_lr=0.15, max_epochs=3)
    return dataclasses.replace(base, **tiny, protocol=spec, run_protocol=True)


@pytest.mark.parametrize("lr", [0.15, 0.0])
def test_phase_1_holds_out_the_last_images_and_stops_patience_epochs_after_the_best_then_phase_2_retrains(tmp_path, lr):
    """64 training images, the protocol's 4/5 split: phase 1 trains on 0-50, validates on 51-63
    after every epoch and stops 2 epochs after its lowest error (at the cap of 12 at the latest);
    phase 2 trains a fresh network on all 64 for the best epoch's count and is the result. With
    LR 0 the error never changes: the best is epoch 1 and phase 1 stops after epoch 3."""
    recipe = dataclasses.replace(tiny_protocol_recipe(), base_lr=lr)
    data = tiny_data()
    result, record = train_with_protocol(recipe, data, tmp_path / "seed_0", seed=0)
    assert (record["train_images"], record["validation_images"]) == (51, 13)
    metrics = [json.loads(line) for line in (tmp_path / "seed_0" / "validation" / "metrics.jsonl").read_text().splitlines()]
    errors = [m["test_error"] for m in metrics]
    assert all(m["step"] == (i + 1) * (51 // 8) for i, m in enumerate(metrics))  # trained on 51 images a epoch
    assert all(e * 13 == pytest.approx(round(e * 13)) for e in errors)  # evaluated on the 13 held out
    best = int(np.argmin(errors)) + 1  # the first lowest
    assert record["best_epoch"] == best and record["best_validation_error"] == errors[best - 1]
    assert len(errors) == min(best + 2, 12) and record["stopped_early"] == (len(errors) < 12)
    if lr == 0.0:
        assert best == 1 and len(errors) == 3
    assert result.steps == best * (64 // 8) and result.num_test == 21 and result.run_dir == str(tmp_path / "seed_0")
    # Run again: phase 1 is read back (not trained), phase 2 restored from its final checkpoint.
    again, record_again = train_with_protocol(recipe, data, tmp_path / "seed_0", seed=0)
    assert record_again == record and again.test_error == result.test_error and again.steps == result.steps


def test_held_out_images_and_a_training_set_too_small_for_the_split():
    recipe = tiny_protocol_recipe(train_size=40_000, of_total=50_000)
    assert held_out(recipe, 50_000) == 40_000  # the yaml's own split
    assert held_out(recipe, 4_000) == 3_200  # the same fraction [ours]
    with pytest.raises(UsageError, match="use more training images"):
        held_out(recipe, 9)  # 7 to train on at batch size 8


def test_recipe_protocol_is_for_rows_that_have_one():
    table = load_experiment("cifar10").TABLE
    opts = Options(schedule="protocol")
    recipe, recorded = apply_options(table.variant("maxout_dropout").recipe, opts)
    assert recipe.run_protocol and recipe.protocol.train_size == 40_000 and recipe.protocol.patience == 100
    assert any(r.startswith("recipe=protocol") for r in recorded)
    aug, _ = apply_options(table.variant("maxout_dropout_aug").recipe, opts)
    assert aug.run_protocol and aug.augment and aug.max_epochs == 474
    assert not apply_options(table.variant("maxout_dropout").recipe, Options())[0].run_protocol  # the default row: 785 epochs
    with pytest.raises(UsageError, match="--rows maxout_dropout"):
        apply_options(table.variant("nin_dropout").recipe, opts)


def test_the_table_command_refuses_recipe_protocol_for_a_nin_row(tmp_path, capsys):
    from nin_repro.cli import main

    args = ["cifar10", "--smoke", "--rows", "nin_dropout", "--recipe", "protocol", "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--recipe protocol" in err and "--rows maxout_dropout" in err and "Traceback" not in err
    assert not list((tmp_path / "w").rglob("nin_dropout*"))  # nothing trained


def test_a_table_run_with_recipe_protocol_records_both_phases_in_each_seeds_run(tmp_path, monkeypatch, capsys):
    """Through the table command's path: each seed on its own (its own early stop), run.json with
    the protocol's record, the row naming the recipe and each seed's best epoch."""
    from nin_repro import reproduce as rep
    from nin_repro.recipe import PaperRow, Table, Variant
    from tests.test_parallel import _serve_tiny_data

    _serve_tiny_data(monkeypatch)
    recipe = dataclasses.replace(tiny_protocol_recipe(), run_protocol=False, preprocess="scale01", seeds=(0, 1))
    table = Table("tiny", "Tiny", "test", (PaperRow("Maxout", 10.0, "", variant="maxout"),), (Variant("maxout", "Maxout", recipe, baseline=True),), tolerance_pp=1.0)
    opts = rep.Options(results_dir=tmp_path / "results", workdir=tmp_path / "runs", schedule="protocol", parallel_seeds=True)
    md, js = rep.reproduce(table, opts, variants=("maxout",))
    assert "--recipe protocol trains the seeds one at a time" in capsys.readouterr().err
    (variant,) = json.loads(js.read_text())["variants"]
    assert len(variant["run_dirs"]) == 2
    bests = []
    for run_dir in variant["run_dirs"]:
        record = json.loads((Path(run_dir) / "run.json").read_text())
        assert record["protocol"] == json.loads((Path(run_dir) / "validation" / "protocol.json").read_text())
        bests.append(record["protocol"]["best_epoch"])
        assert record["result"]["steps"] == record["protocol"]["best_epoch"] * (64 // 8)
    assert variant["schedule"] == f"pylearn2 + validation protocol (best epochs {bests[0]}, {bests[1]})"
    # The record reads back (a pylearn2 recipe: no paper_phases; its protocol), and `eval` agrees with it.
    from nin_repro.cli import main

    _, back, _ = rep.load_run(Path(variant["run_dirs"][0]))
    assert back.run_protocol and back.protocol == recipe.protocol and back.paper_phases is None
    assert main(["eval", variant["run_dirs"][0]]) == 0
    assert any(o.startswith("recipe=protocol") for o in variant["overrides"])


def test_the_mnist_continuation_starts_where_the_best_epoch_was_without_dropout():
    """mnist_continued.yaml's LR and momentum are the best epoch's, read off mnist.yaml's schedule
    by hand: ExponentialDecay, lr 0.05 / 1.00004^t after t = best x 390 steps (50k images, batch
    128); MomentumAdjustor .5 -> .7 from count 1 to 250, count = the best epoch."""
    from nin_repro.protocol import continued_recipe

    recipe = apply_options(load_experiment("mnist").TABLE.variant("maxout_dropout").recipe, Options(schedule="protocol"))[0]
    assert recipe.protocol.then == "continue" and (recipe.protocol.train_size, recipe.protocol.of_total) == (50_000, 60_000)
    for best in (1, 100, 300):
        c = continued_recipe(recipe, best, 50_000 // 128)
        assert c.base_lr == pytest.approx(max(0.05 / 1.00004 ** (best * 390), 1e-6), rel=1e-6)
        a = min(max((best - 1) / 249, 0.0), 1.0)
        assert c.momentum == pytest.approx(0.5 * (1 - a) + 0.7 * a)
        assert (c.lr_decay, c.momentum_adjust, c.run_protocol) == (("exponential", 1.0, 0.0), (), False)  # both fixed
        assert {s.include_prob for s in c.model.maxout_convs} == {1.0} and c.model.softmax_include_prob == 1.0
        assert {s.input_scale for s in c.model.maxout_convs} == {1.0} and c.model.softmax_input_scale == 1.0


def test_continue_runs_from_the_best_parameters_to_the_nll_target_and_reports_the_test_set(tmp_path):
    from nin_repro.protocol import CONTINUED_DIR, _evaluate

    recipe = tiny_protocol_recipe(then="continue", max_epochs=8)
    recipe = dataclasses.replace(recipe, base_lr=0.03, lr_decay=("exponential", 1.00004, 1e-6), momentum_adjust=(0.7, 1, 250))
    data = tiny_data()
    result, record = train_with_protocol(recipe, data, tmp_path / "seed_0", seed=0)
    best_dir = tmp_path / "seed_0" / "validation" / "best_params"
    # The target: the best phase-1 network's mean NLL on the 51 images it trained on.
    assert record["target_nll"] == pytest.approx(_evaluate(recipe, saved(recipe, best_dir), data.x_train[:51], data.y_train[:51]).loss)
    metrics = [json.loads(line) for line in (tmp_path / "seed_0" / CONTINUED_DIR / "metrics.jsonl").read_text().splitlines()]
    losses = [m["test_loss"] for m in metrics]  # on the 13 held-out images, now trained on too
    reached = [loss <= record["target_nll"] for loss in losses]
    assert not any(reached[:-1]) and reached[-1]  # stopped at the first epoch at the target (before the cap of 8)
    assert all(m["step"] == (i + 1) * 8 for i, m in enumerate(metrics))  # all 64 images a epoch
    # The row's number: the final parameters on the test set, saved where every run keeps them.
    test = _evaluate(recipe, saved(recipe, tmp_path / "seed_0" / "params"), data.x_test, data.y_test)
    assert (result.test_error, result.num_test, result.run_dir) == (test.error, 21, str(tmp_path / "seed_0"))
    assert record["continued_epochs"] == len(losses) == result.epochs


def test_resume_early_stops_on_the_datasets_validation_split_twice_and_reports_the_second_best(tmp_path):
    """svhn.yaml then svhn2.yaml on tiny data: every training image trains, the dataset's own 13
    validation images decide both stops; phase 2 starts from phase 1's best at the fixed LR and
    momentum of pylearn2_phase2, and its best epoch's network is the one evaluated and saved."""
    from nin_repro.protocol import RESUMED_DIR, _evaluate, resumed_recipe

    spec = ValidationProtocol(patience=2, max_epochs=6, split="dataset", then="resume")
    recipe = dataclasses.replace(tiny_protocol_recipe(), protocol=spec, base_lr=0.03, pylearn2_phase2=(9, 0.02, 0.9))
    c = resumed_recipe(recipe)
    assert (c.base_lr, c.momentum, c.lr_decay, c.momentum_adjust, c.pylearn2_phase2) == (0.02, 0.9, ("exponential", 1.0, 0.0), (), ())
    assert c.model == recipe.model  # the same dropout
    val = tiny_data(n=13, m=1, seed=1)
    data = dataclasses.replace(tiny_data(), x_val=val.x_train, y_val=val.y_train)
    result, record = train_with_protocol(recipe, data, tmp_path / "seed_0", seed=0)
    assert (record["train_images"], record["validation_images"]) == (64, 13)
    for folder, best, epochs in (("validation", record["best_epoch"], record["epochs_trained"]), (RESUMED_DIR, record["resumed_best_epoch"], record["resumed_epochs"])):
        metrics = [json.loads(line) for line in (tmp_path / "seed_0" / folder / "metrics.jsonl").read_text().splitlines()]
        errors = [m["test_error"] for m in metrics]
        assert all(m["step"] == (i + 1) * 8 for i, m in enumerate(metrics))  # all 64 images a epoch
        assert best == int(np.argmin(errors)) + 1 and len(errors) == epochs == min(best + 2, 6)
    best2 = tmp_path / "seed_0" / RESUMED_DIR / "best_params"
    test = _evaluate(c, saved(c, best2), data.x_test, data.y_test)
    assert (result.test_error, result.num_test) == (test.error, 21)
    assert _evaluate(c, saved(c, tmp_path / "seed_0" / "params"), data.x_test, data.y_test) == test  # the reported network is saved
    with pytest.raises(UsageError, match="has none"):
        train_with_protocol(recipe, tiny_data(), tmp_path / "no_val", seed=0)


def test_prepare_gives_the_validation_split_the_training_images_preprocessing(tmp_path):
    """SVHN's validation images reach the protocol preprocessed as the training images are (the
    statistics fitted on the training images only); datasets without one have none."""
    from nin_repro.data import Dataset
    from nin_repro.preprocess import fit_preprocessor
    from nin_repro.reproduce import prepare

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 8, 8, 1)).astype(np.uint8)
    labels = rng.integers(0, 4, 30).astype(np.int32)
    ds = Dataset("tiny", images[:20], labels[:20], images[20:25], labels[20:25], 4, ("a", "b", "c", "d"), "synthetic", images[25:], labels[25:])
    recipe = dataclasses.replace(tiny_protocol_recipe(), preprocess="standardize")
    data, _ = prepare(ds, recipe, tmp_path)
    expected = fit_preprocessor("standardize", images[:20]).apply(images[25:])
    np.testing.assert_array_equal(data.x_val, expected)
    np.testing.assert_array_equal(data.y_val, labels[25:])
    assert prepare(dataclasses.replace(ds, x_val=None, y_val=None), recipe, tmp_path)[0].x_val is None
