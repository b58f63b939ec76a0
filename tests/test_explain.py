"""The analysis commands end to end at tiny scale: figure4, cam, gap-claims, plot, ablate-aux."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nin_repro.cli import main

SHORT = ["--epochs", "0.25"]  # models trained on demand: 15 steps on the demo digits


@pytest.fixture(scope="module")
def demo_scale(tmp_path_factory):
    """gap-claims with no saved run trains the demo-scale GAP and FC models; cam the GAP -> Dense one."""
    root = tmp_path_factory.mktemp("explain")
    runs, results = root / "runs", root / "results"
    assert main(["gap-claims", "--workdir", str(runs), "--results-dir", str(results), "--max-shift", "2", "--sizes", "24,40", *SHORT]) == 0
    assert main(["cam", "--workdir", str(runs), "--results-dir", str(results), "--images", "3", *SHORT]) == 0
    return {"runs": runs, "results": results}


def test_gap_claims_trains_both_heads_and_reports_fc_sizes_as_na(demo_scale):
    runs, results = demo_scale["runs"], demo_scale["results"]
    for variant in ("gap", "fc"):
        assert (runs / "analysis" / variant / "seed_0" / "run.json").is_file()
    rec = json.loads((results / "gap_claims.json").read_text())
    assert rec["same_trunk"] and rec["training_size"] == 28
    assert rec["gap"]["head_params"] == 0 and rec["fc"]["head_params"] == 7 * 7 * 10 * 10 + 10
    assert all(v is not None for v in rec["gap"]["sizes"].values())
    assert rec["fc"]["sizes"]["28"] is not None
    assert [s for s, v in rec["fc"]["sizes"].items() if v is None] == ["24", "40"]
    assert sorted(rec["gap"]["translations"]) == ["0", "1", "2"]
    # The error at the training size is the run's recorded test error (same parameters, same images).
    recorded = json.loads((runs / "analysis" / "gap" / "seed_0" / "run.json").read_text())["result"]["test_error"]
    assert rec["gap"]["sizes"]["28"] == recorded == rec["gap"]["test_error"]
    md = (results / "gap_claims.md").read_text()
    assert "n/a (built for 28 px)" in md and "demo model on 5k digits" in md.lower() and "shortened" in md


def test_cam_writes_figure_and_its_identity_check(demo_scale):
    results = demo_scale["results"]
    rec = json.loads((results / "cam.json").read_text())
    assert rec["head"] == "gap_dense" and rec["cam_identity_max_abs_err"] < 1e-3
    loc = rec["localization"]
    assert loc["num_images"] == 1000 and 0.0 <= loc["pointing_predicted"] <= 1.0 and 0.0 < loc["centre_baseline"] < 1.0
    assert (results / "cam.png").stat().st_size > 10_000
    assert "![Class activation maps](cam.png)" in (results / "cam.md").read_text()


def test_figure4_uses_the_saved_gap_run_and_measures_localization(demo_scale, capsys):
    runs, results = demo_scale["runs"], demo_scale["results"]
    assert main(["figure4", "--workdir", str(runs), "--results-dir", str(results), "--canvas", "40"]) == 0
    assert "using the saved run" in capsys.readouterr().err
    rec = json.loads((results / "figure4.json").read_text())
    assert rec["run"].endswith("analysis/gap/seed_0")
    assert rec["localization"]["canvas"] == 40 and 0.0 <= rec["strongest_map_agreement"] <= 1.0
    assert (results / "figure4.png").stat().st_size > 10_000


def test_figure4_on_a_smoke_run_is_captioned_and_skips_localization(smoke_cifar10, tmp_path):
    run_dir = smoke_cifar10["table"]["variants"][0]["run_dirs"][0]
    assert main(["figure4", "--run", run_dir, "--results-dir", str(tmp_path)]) == 0
    md = (tmp_path / "smoke" / "figure4.md").read_text()
    assert "untrained smoke model — not evidence" in md.lower()
    assert "Localization: not measured" in md
    assert (tmp_path / "smoke" / "figure4.png").is_file()


def test_cam_refuses_an_fc_model_in_one_line(demo_scale, capsys):
    fc = demo_scale["runs"] / "analysis" / "fc" / "seed_0"
    assert main(["cam", "--run", str(fc), "--results-dir", str(demo_scale["results"])]) == 2
    err = capsys.readouterr().err.strip()
    assert "GAP head" in err and len(err.splitlines()) == 1


def test_gap_claims_checks_which_run_is_which(demo_scale, capsys):
    a = demo_scale["runs"] / "analysis"
    args = ["gap-claims", "--gap", str(a / "fc" / "seed_0"), "--fc", str(a / "gap" / "seed_0"), "--results-dir", str(demo_scale["results"])]
    assert main(args) == 2
    assert "expected gap" in capsys.readouterr().err
    assert main(["gap-claims", "--gap", str(a / "gap" / "seed_0")]) == 2


def test_plot_draws_several_runs_and_rejects_a_folder_without_metrics(demo_scale, tmp_path, capsys):
    a = demo_scale["runs"] / "analysis"
    out = tmp_path / "curves.png"
    assert main(["plot", str(a / "gap" / "seed_0"), str(a / "fc" / "seed_0"), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_ablate_aux_demo_reports_both_rows_and_epochs_to_target(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    assert main(["ablate-aux", "--demo", "--epochs", "0.25", "--workdir", str(runs), "--results-dir", str(results)]) == 0
    table = json.loads((results / "ablate-aux-demo.json").read_text())
    keys = [v["key"] for v in table["variants"]]
    assert keys == ["nin_gap", "nin_gap_aux"]
    assert all(len(v["epochs_to_target"]) == 1 for v in table["variants"])
    (aux_run,) = table["variants"][1]["run_dirs"]  # shortened: its own folder, nin_gap_aux@<fingerprint>/seed_0
    recipe = json.loads((Path(aux_run) / "run.json").read_text())["recipe"]
    assert recipe["model"]["aux_after"] == 1 and recipe["model"]["aux_weight"] == 0.3
    md = (results / "ablate-aux-demo.md").read_text()
    assert "Epochs to reach 5 % test error" in md and "shortened: 0.25 of 12 epochs" in md


def test_demo_flag_only_where_a_demo_table_exists(capsys):
    assert main(["cifar10", "--demo", "--dry-run"]) == 2
    assert "no demo-scale version" in capsys.readouterr().err


def test_figures_are_deterministic(demo_scale, tmp_path):
    runs = demo_scale["runs"]
    run = str(runs / "analysis" / "gap" / "seed_0")
    for out in ("a", "b"):
        assert main(["figure4", "--run", run, "--results-dir", str(tmp_path / out), "--canvas", "36"]) == 0
    assert (tmp_path / "a" / "figure4.png").read_bytes() == (tmp_path / "b" / "figure4.png").read_bytes()
    a, b = (json.loads((tmp_path / o / "figure4.json").read_text()) for o in ("a", "b"))
    assert a["localization"] == b["localization"] and a["strongest_map_agreement"] == b["strongest_map_agreement"]


def test_a_damaged_run_record_is_one_line(demo_scale, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo_scale["runs"] / "analysis" / "gap" / "seed_0", run)
    (run / "run.json").write_text("{")
    for cmd in (["figure4", "--run", str(run)], ["eval", str(run)]):
        assert main([*cmd, "--results-dir", str(tmp_path)] if cmd[0] == "figure4" else cmd) == 2
        err = capsys.readouterr().err.strip()
        assert "not a readable run record" in err and len(err.splitlines()) == 1
