"""`nin-repro check-gpu` on a CPU: the budget arithmetic, the cut at an epoch boundary, the plan's
estimate, and tiny plans run end to end (a few seconds of training in all; time is a fake clock
where the test asserts what was cut)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nin_repro import checkgpu
from nin_repro.cli import main

pytestmark = pytest.mark.usefixtures("tiny_runs_compile_at_o0")  # tiny runs: conftest.py


class FakeClock:
    """Time that moves only when told (here: one second per epoch logged)."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_budget_gives_each_part_its_share_of_what_is_left():
    clock = FakeClock()
    budget = checkgpu.Budget(100.0, checkgpu.PARTS, clock)
    assert budget.part_deadline("bench") == pytest.approx(100.0 * checkgpu.SHARES["bench"])
    clock.t = 2.0  # bench used 2 s of its 8: the 6 left over pass to the later parts
    later = sum(checkgpu.SHARES[p] for p in ("cifar", "mnist", "init-study"))
    assert budget.part_deadline("cifar") == pytest.approx(2.0 + 98.0 * checkgpu.SHARES["cifar"] / later)
    assert budget.item_deadline(part_deadline=32.0, items_left=2) == pytest.approx(2.0 + 15.0)
    clock.t = 200.0  # past the end: nothing left for anyone
    assert budget.part_deadline("init-study") == 200.0 and budget.item_deadline(150.0, 3) == 200.0


def test_deadline_cuts_at_the_first_chunk_after_an_epoch_and_never_the_last():
    clock = FakeClock()
    progress = checkgpu.Deadline(deadline=1.0, clock=clock)
    progress.start(total_steps=10, description="seed 0")
    clock.t = 5.0
    progress.update(3, epoch=0.6, loss=2.3, img_per_s=1.0)  # past the deadline, but inside epoch 1: goes on
    progress.epoch_end({"epoch": 1})
    progress.update(10, epoch=2.0, loss=2.3, img_per_s=1.0)  # the run's last chunk: finishes
    progress.start(total_steps=10, description="seed 1")
    progress.update(5, epoch=1.0, loss=2.3, img_per_s=1.0)
    progress.epoch_end({"epoch": 1})
    with pytest.raises(checkgpu.BudgetCut, match="epoch 1"):
        progress.update(6, epoch=1.2, loss=2.3, img_per_s=1.0)


def test_dry_run_estimates_each_part_from_a_measured_rate(monkeypatch, capsys):
    from nin_repro import bench

    measured = []

    def fake_bench(recipe, *, batch_size, dtype, steps, **_):
        measured.append((recipe.model.in_channels, batch_size, dtype))
        row = bench.BenchResult("train", dtype, batch_size, steps, compile_s=1.0, ms_per_step=1.0, img_per_s=1024.0, tflops=0.0, pct_of_peak=None)
        return [row, dataclasses.replace(row, what="eval")]

    monkeypatch.setattr(bench, "bench_recipe", fake_bench)
    assert main(["check-gpu", "--scale", "tiny", "--dry-run", "--budget", "1"]) == 0
    out = capsys.readouterr().out
    assert sorted(measured) == [(1, 64, "float32"), (3, 64, "float32")]  # one measurement per network, nothing trained
    # MNIST row, tiny plan: 2 seeds x 2 epochs x (512 // 64 = 8 steps) x 64 = 2,048 images / 1,024 img/s + 2 compiles of 1 s.
    assert "mnist nin_dropout: 2 seeds x 2 epochs: 2,048 training images -> 4.0s" in out
    assert "input_pixel_mean: 2 seeds x 16 steps: 2,048 training images -> 4.0s" in out
    for part in checkgpu.PARTS:
        assert f"\n{part}: about " in out
    # cifar: 2 rows x 4.0 s = 8.0 s against its share of 60 s x 0.32 = 19.2 s
    assert "cifar: about 8.0s; its share of the budget 19.2s" in out


def test_budget_zero_records_every_part_as_cut_and_trains_nothing(tmp_path, capsys):
    results, runs = tmp_path / "results", tmp_path / "runs"
    assert main(["check-gpu", "--scale", "tiny", "--budget", "0", "--results-dir", str(results), "--workdir", str(runs)]) == 0
    record = json.loads((results / "check-gpu.json").read_text())
    assert [p["name"] for p in record["parts"]] == list(checkgpu.PARTS)
    assert all(p["status"] == "cut" and p["items"] for p in record["parts"])
    assert all(i["status"] == "cut" and i["cut"].startswith("not started") for p in record["parts"] for i in p["items"])
    assert not list(runs.rglob("metrics.jsonl"))
    assert record["shortened"] and record["provenance"]["device"]["kind"]
    assert "[check-gpu](check-gpu.md)" in (results / "README.md").read_text()
    assert "## What the budget cut" in (results / "check-gpu.md").read_text()


def test_bad_part_or_scale_is_one_line(capsys):
    assert main(["check-gpu", "--part", "everything", "--dry-run"]) == 2
    assert main(["check-gpu", "--scale", "huge", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--part everything" in err and "--scale 'huge'" in err and "Traceback" not in err


class EpochClock(FakeClock):
    """A train.Progress whose every epoch logged (per seed) takes one second of the fake clock."""

    def start(self, total_steps, description):
        pass

    def update(self, step, **_):
        pass

    def epoch_end(self, record):
        self.t += 1.0

    def close(self):
        pass


def _run(tmp_path, scale, parts, budget_s, clock=None):
    check = checkgpu.Check(scale, "tiny", budget_s, tmp_path / "results", tmp_path / "runs", say=lambda line: None, **({"clock": clock, "progress": clock} if clock else {}))
    checkgpu.run_check(check, parts)
    return json.loads((tmp_path / "results" / "check-gpu.json").read_text()), (tmp_path / "results" / "check-gpu.md").read_text()


def test_a_table_row_cut_by_the_budget_keeps_its_finished_epoch_and_the_next_row_is_skipped(tmp_path):
    """MNIST part, tiny plan (one seed, 2 epochs of 8 steps a row), a budget of 1 (fake) second:
    row 1's share is 0.5 s; after its first epoch (t = 1) it stops at the epoch boundary; row 2
    finds nothing left and is not started."""
    clock = EpochClock()
    record, page = _run(tmp_path, dataclasses.replace(checkgpu.TINY, mnist_seeds=1), ("mnist",), 1.0, clock)
    (part,) = record["parts"]
    first, second = part["items"]
    assert part["status"] == "cut" and first["planned_epochs"] == 2 and first["planned_steps"] == 16
    assert first["status"] == "cut" and "epoch 1" in first["cut"]
    (seed,) = first["seeds"]
    assert (seed["epochs"], seed["steps"], seed["attempts"]) == (1, 8, 1) and 0 <= seed["test_error_pct"] <= 100
    assert second["status"] == "cut" and second["cut"].startswith("not started") and not second["seeds"]
    assert "| mnist nin_dropout | cut (budget share used up at epoch 1) | 1 / 2 |" in page
    assert "- mnist: mnist nin_dropout_ours" in page


def test_init_study_keeps_the_finished_variant_when_the_next_is_cut_and_they_share_one_program(tmp_path):
    """Two init-study variants that differ only in the input (one compiled program for both), one
    seed, a horizon of 16 steps (2 epochs of 8), a budget of 3 (fake) seconds: the first variant's
    share is 1.5 s, its only check (t = 1) passes and it finishes at t = 2; the second gets the 1 s
    left and is cut after its first epoch."""
    from nin_repro import train

    scale = dataclasses.replace(checkgpu.TINY, variants=("input_pixel_mean", "input_pixel_mean01"), study_seeds=1)
    train._program.cache_clear()
    record, page = _run(tmp_path, scale, ("init-study",), 3.0, EpochClock())
    assert train._program.cache_info().misses == 1  # the second variant reused the first one's program
    first, second = record["parts"][0]["items"]
    assert first["status"] == "finished" and [s["steps"] for s in first["seeds"]] == [16] and first["planned_steps"] == 16
    assert {"stalled", "learned", "test_error_pct", "max_dead_run"} <= set(first["seeds"][0])
    assert second["status"] == "cut" and [(s["epochs"], s["steps"]) for s in second["seeds"]] == [(1, 8)]
    assert "| `input_pixel_mean` |" in page and "| 16 / 16 |" in page and "| 8 / 16 |" in page


def test_bench_part_records_each_configuration_and_one_evaluation_per_batch(tmp_path, monkeypatch):
    from nin_repro import bench

    calls = []

    def fake_bench(recipe, *, batch_size, dtype, steps, seeds=1, **_):
        calls.append((dtype, batch_size, seeds, steps))
        row = bench.BenchResult("train", dtype, batch_size, steps, 1.0, 1.0, 100.0 * seeds, 0.1, None, models=seeds, img_per_s_per_model=100.0)
        return [row, dataclasses.replace(row, what="eval", models=1)]

    monkeypatch.setattr(bench, "bench_recipe", fake_bench)
    record, page = _run(tmp_path, checkgpu.TINY, ("bench",), 60.0)
    assert calls == [("bfloat16", 16, 1, 2), ("float32", 8, 1, 2), ("float32", 8, 2, 2)]
    items = record["parts"][0]["items"]
    assert [[r["what"] for r in i["results"]] for i in items] == [["train", "eval"], ["train", "eval"], ["train"]]
    assert record["parts"][0]["status"] == "finished" and page.count("| train |") == 3 and page.count("| eval |") == 2


def test_a_row_that_fails_is_recorded_and_the_check_goes_on(tmp_path, monkeypatch):
    from nin_repro import reproduce
    from nin_repro.errors import TrainingFailed

    def failing(table, variant, *args, **kw):
        raise TrainingFailed(f"{variant.key}: the loss became nan at step 3")

    monkeypatch.setattr(reproduce, "train_with_retries", failing)
    record, page = _run(tmp_path, checkgpu.TINY, ("mnist",), 60.0)
    items = record["parts"][0]["items"]
    assert [i["status"] for i in items] == ["failed", "failed"] and record["parts"][0]["status"] == "failed"
    assert "## What failed" in page and "nin_dropout_ours: the loss became nan" in page


def test_recipes_that_differ_only_in_data_seeds_base_lr_or_init_share_a_program_and_compute_the_same():
    """train.compiled_recipe is what the compiled program is cached by: the init-study variants of
    the input, the base LR and the init map to one; a change of the forward pass (no final ReLU)
    does not. The forward pass of a network never reads its init stds: the same parameters give
    the same class scores through either variant's graph."""
    import jax
    import numpy as np
    from flax import nnx

    from nin_repro.recipe import load_experiment
    from nin_repro.train import compiled_recipe, init_model

    variants = {key: recipe for key, _, _, recipe in load_experiment("init_study").VARIANTS}
    same = {compiled_recipe(variants[k]) for k in ("input_scale01", "input_gcn", "pixel_mean_lr_0.01", "pixel_mean_cccp6_std", "pixel_mean_he_init")}
    assert len(same) == 1
    assert compiled_recipe(variants["pixel_mean_no_final_relu"]) not in same
    assert compiled_recipe(variants["pixel_mean_warmup"]) not in same
    tiny = {k: dataclasses.replace(variants[k], model=variants[k].model.scaled(0.0625)) for k in ("input_pixel_mean", "pixel_mean_he_init")}
    graph_a, _ = nnx.split(init_model(tiny["input_pixel_mean"], 0), nnx.Param)
    graph_b, params_b = nnx.split(init_model(tiny["pixel_mean_he_init"], 1), nnx.Param)
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    np.testing.assert_array_equal(nnx.merge(graph_a, params_b)(x), nnx.merge(graph_b, params_b)(x))


def test_init_study_part_runs_the_authors_dropout_variants_first():
    """A budget cut falls on the inverted-dropout variants, which already have CPU numbers."""
    keys = [key for key, *_ in checkgpu.study_variants(checkgpu.Scale())]
    authors = [k for k in keys if k.startswith("author_")]
    assert authors and keys[: len(authors)] == authors and len(keys) > len(authors)
    assert "author_standardize_he_no_final_relu_adam" in authors


def test_pylearn2_recipes_keep_their_base_lr_in_the_program_key():
    """ExponentialDecay's floor is min_lr / base_lr, computed in the compiled step: two maxout
    recipes that differ only in base LR must not share a program."""
    from nin_repro.recipe import load_experiment
    from nin_repro.train import compiled_recipe

    recipe = load_experiment("baselines_mnist").MAXOUT_RECIPE
    assert recipe.schedule == "pylearn2"
    assert compiled_recipe(recipe) != compiled_recipe(dataclasses.replace(recipe, base_lr=2 * recipe.base_lr))


def test_the_baselines_part_runs_only_when_named_each_net_for_its_epochs_without_retries(tmp_path):
    """--part baselines: the maxout SVHN and CIFAR-10 nets on the digits as 32x32x3, the yamls'
    schedules unscaled over the run (max_epochs = the epochs, svhn2.yaml left out), a stall judged
    at the end only and not retried; not part of the default check. With no budget the part lists
    both rows, planned, and trains nothing (the rows train through the same code as the mnist part's)."""
    assert "baselines" not in checkgpu.PARTS and checkgpu.check_parts(("baselines", "bench")) == ("bench", "baselines")
    scale = dataclasses.replace(checkgpu.TINY, baseline_epochs=3)
    items = [i for i in checkgpu.table_items(scale) if i.part == "baselines"]
    assert [(i.table, i.variant, i.dataset) for i in items] == [("svhn", "maxout_dropout", "digits5k_rgb32"), ("cifar10", "maxout_dropout", "digits5k_rgb32")]
    for item in items:
        _, recipe = checkgpu.item_recipe(item, scale)
        assert (recipe.max_epochs, recipe.epochs, recipe.pylearn2_phase2, recipe.stall_epochs, recipe.attempts) == (3, None, (), 3, 1)
    record, page = _run(tmp_path, scale, ("baselines",), 0.0)
    (part,) = record["parts"]
    assert part["name"] == "baselines" and [(i["status"], i["planned_epochs"]) for i in part["items"]] == [("cut", 3), ("cut", 3)]
    assert "## baselines: cut" in page
    assert not list(tmp_path.rglob("metrics.jsonl"))  # nothing trained
