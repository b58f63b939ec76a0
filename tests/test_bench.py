import json

import pytest

from nin_repro.cli import main
from nin_repro.recipe import load_experiment


@pytest.mark.parametrize("table, macs", [("cifar10", 222_486_528), ("cifar100", 223.6e6), ("mnist", 50.7e6)])
def test_macs_from_layer_shapes_match_the_paper_facts(table, macs):
    # nin-facts §7: exact for CIFAR-10, rounded to 0.1 M for the others.
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
