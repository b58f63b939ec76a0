import json

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
