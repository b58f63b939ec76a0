import dataclasses
import json

import numpy as np
import pytest

from nin_repro.cli import main
from nin_repro.recipe import load_experiment


@pytest.mark.parametrize("table, macs", [("cifar10", 222_486_528), ("cifar100", 223.6e6), ("mnist", 50.7e6)])
def test_macs_from_layer_shapes_match_the_paper_facts(table, macs):
    # docs/paper-notes.md, "Architecture": exact for CIFAR-10, rounded to 0.1 M for the others.
    got = load_experiment(table).RECIPE.model.forward_macs()
    assert got == macs if isinstance(macs, int) else abs(got - macs) < 0.05e6


def test_bench_command_writes_numbers(tmp_path, capsys):
    assert main(["bench", "--table", "demo", "--batch-size", "16", "--steps", "2", "--peak-tflops", "1.0", "--results-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["what"]: r for r in data["results"]}
    assert set(rows) == {"train", "eval"}
    for r in rows.values():
        assert r["img_per_s"] > 0 and r["steps"] == 2 and r["batch_size"] == 16
        assert r["pct_of_peak"] == pytest.approx(100 * r["tflops"] / 1.0)
    assert "img/s" in (tmp_path / "bench.md").read_text()


def test_bench_rejects_unknown_dtype(capsys):
    assert main(["bench", "--dtype", "fp8"]) == 2
    assert "unknown --dtype" in capsys.readouterr().err


def test_bench_seeds_times_one_vmapped_step_over_k_models(tmp_path):
    import dataclasses

    from nin_repro.bench import bench_recipe, write_bench
    from nin_repro.models import BlockSpec

    recipe = load_experiment("demo").RECIPE
    blocks = (BlockSpec(3, (6, 6, 6), init_std=None, pool="max", dropout=0.5), BlockSpec(3, (6, 6, 10), init_std=None, pool="none", dropout=0.0))
    tiny = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, blocks=blocks, input_hw=(8, 8)))
    train, evaluate = bench_recipe(tiny, batch_size=8, dtype="float32", steps=1, seeds=2)
    assert (train.models, evaluate.models) == (2, 1)
    assert train.img_per_s == pytest.approx(2 * train.img_per_s_per_model) and train.img_per_s > 0
    prov = {"device": {"kind": "cpu", "platform": "cpu"}, "versions": {"jax": "x"}, "commit": "c", "date": "d"}
    write_bench([train, evaluate], tmp_path / "bench.md", "demo", prov)
    assert "| train | float32 | 8 | 2 |" in (tmp_path / "bench.md").read_text()


def test_the_cifar10_roofline_from_layer_shapes():
    """1.335 GFLOP per training image (3 x forward); activations 671,360 values per image, 4 accesses
    of 4 bytes each per training step -> 10.7 MB; on an H100 (989 TFLOP/s bf16, 3.35 TB/s) the
    memory ceiling is the lower one for bf16 training."""
    from nin_repro.bench import roofline

    model = load_experiment("cifar10").RECIPE.model
    assert model.activation_elements() == 3072 + 32 * 32 * (192 + 160 + 96) + 16 * 16 * 96 + 16 * 16 * (192 * 3) + 8 * 8 * 192 + 8 * 8 * (192 + 192 + 10)
    roof = roofline(model, "train", "float32", 494.7, 3.35e12)
    assert roof.flops == 6 * 222_486_528 and roof.bytes == 4 * 4 * model.activation_elements()
    bf16 = roofline(model, "train", "bfloat16", 989.0, 3.35e12)
    assert bf16.bound == "memory" and bf16.ceiling_img_s == pytest.approx(3.35e12 / (8 * model.activation_elements()))
    assert roofline(model, "train", "float32", None, None).bound == "unknown"


def test_bench_reports_both_ceilings_when_the_device_is_described(tmp_path):
    assert main(["bench", "--table", "demo", "--batch-size", "16", "--steps", "1", "--peak-tflops", "1.0", "--hbm-gb-s", "100", "--results-dir", str(tmp_path)]) == 0
    train = next(r for r in json.loads((tmp_path / "bench.json").read_text())["results"] if r["what"] == "train")
    lower = min(train["compute_ceiling_img_s"], train["memory_ceiling_img_s"])
    assert train["pct_of_ceiling"] == pytest.approx(100 * train["img_per_s"] / lower)
    assert train["bound"] == ("memory" if train["memory_ceiling_img_s"] < train["compute_ceiling_img_s"] else "compute")


def test_bench_times_the_scanned_call_that_gpu_training_makes(monkeypatch):
    # Forced to the GPU/TPU path on this CPU: 6 steps as one scanned call (what an epoch is there),
    # timed as 6 steps; the default on a CPU is one step per call, as training runs it.
    import dataclasses

    import nin_repro.train as train
    from nin_repro.bench import bench_recipe
    from nin_repro.models import BlockSpec

    recipe = load_experiment("demo").RECIPE
    blocks = (BlockSpec(3, (6, 6, 6), init_std=None, pool="max", dropout=0.5), BlockSpec(3, (6, 6, 10), init_std=None, pool="none", dropout=0.0))
    tiny = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, blocks=blocks, input_hw=(8, 8)))
    made = []
    make = train.make_train_steps
    monkeypatch.setattr(train, "make_train_steps", lambda *a, **kw: made.append(a[3]) or make(*a, **kw))
    scanned, _ = bench_recipe(tiny, batch_size=8, dtype="float32", steps=6, steps_per_call=6)
    per_step, _ = bench_recipe(tiny, batch_size=8, dtype="float32", steps=6)
    assert made == [6, 1] and (scanned.steps_per_call, per_step.steps_per_call) == (6, 1)
    assert scanned.img_per_s > 0 and per_step.img_per_s > 0


def test_bench_compares_random_generators_and_the_recipe_records_its_own(tmp_path, capsys):
    # --rng: the dropout masks' generator is a recorded recipe field; another one gives other streams.
    from nin_repro.train import init_model

    args = ["bench", "--table", "demo", "--steps", "1", "--batch-size", "8", "--rng", "threefry2x32", "--rng", "rbg", "--results-dir", str(tmp_path)]
    assert main(args) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [(r["what"], r["rng_impl"]) for r in rows] == [("train", "threefry2x32"), ("eval", "threefry2x32"), ("train", "rbg")]
    assert main(["bench", "--table", "demo", "--rng", "mersenne", "--results-dir", str(tmp_path)]) == 2
    assert "unknown --rng 'mersenne'" in capsys.readouterr().err
    recipe = load_experiment("demo").RECIPE
    a, b = (init_model(dataclasses.replace(recipe, rng_impl=impl), 0) for impl in ("threefry2x32", "rbg"))
    assert not np.allclose(np.asarray(a.blocks[0].conv.kernel[...]), np.asarray(b.blocks[0].conv.kernel[...]))
