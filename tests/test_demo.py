"""`nin-repro demo`: real digits, offline, >= 95 % held-out accuracy within a fixed step budget."""

import json

from nin_repro.cli import main
from nin_repro.data.digits import load_demo_digits
from nin_repro.reproduce import reevaluate

STEP_BUDGET = 8 * (4000 // 32)  # the demo recipe: 8 epochs of 4,000 digits at batch 32


def test_demo_reaches_95_percent_on_1000_held_out_digits(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    assert main(["demo", "--results-dir", str(results), "--workdir", str(runs)]) == 0
    table = json.loads((results / "demo.json").read_text())
    (variant,) = table["variants"]
    assert variant["steps"] == STEP_BUDGET
    assert variant["num_test"] == 1000
    assert variant["errors_pct"][0] <= 5.0, variant["errors_pct"]
    md = (results / "demo.md").read_text()
    assert "not a paper table" in md and "5,000" in md
    # The recorded error is what the saved parameters give on the held-out digits.
    ds = load_demo_digits()
    err = reevaluate(variant["run_dirs"][0], ds.x_test, ds.y_test)
    assert 100 * err == variant["errors_pct"][0]
