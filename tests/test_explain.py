"""The analysis commands end to end at tiny scale: figure4, cam, gap-claims, plot, ablate-aux."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pytest

from nin_repro.cli import main
from nin_repro.recipe import load_experiment
from tests.figures_drawn import panels, record_figures

SHORT = ["--epochs", "0.25"]  # models trained on demand: 31 steps on the demo digits


@pytest.fixture(scope="module")
def demo_scale(tmp_path_factory):
    """gap-claims with no saved run trains the demo-scale GAP and FC models; cam the GAP -> Dense one."""
    root = tmp_path_factory.mktemp("explain")
    runs, results = root / "runs", root / "results"
    with pytest.MonkeyPatch.context() as mp:
        assert main(["gap-claims", "--workdir", str(runs), "--results-dir", str(results), "--max-shift", "2", "--sizes", "24,40", *SHORT]) == 0
        figures = record_figures(mp)
        assert main(["cam", "--workdir", str(runs), "--results-dir", str(results), "--images", "3", *SHORT]) == 0
    return {"runs": runs, "results": results, "cam_figure": figures}


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


def assert_localization_consistent(loc: dict, canvas: int) -> None:
    """Where the prediction is right the predicted and the true class's maps are the same map, so
    the two pointing scores differ by at most the canvas error; every score counts whole images."""
    assert loc["num_images"] == 1000 and loc["canvas"] == canvas
    assert abs(loc["pointing_predicted"] - loc["pointing_true"]) <= loc["canvas_error"] + 1e-9
    for key in ("pointing_predicted", "pointing_true", "centre_baseline", "canvas_error"):
        assert loc[key] * 1000 == pytest.approx(round(loc[key] * 1000), abs=1e-6), key


def test_cam_writes_figure_and_its_identity_check(demo_scale):
    results = demo_scale["results"]
    rec = json.loads((results / "cam.json").read_text())
    assert rec["head"] == "gap_dense" and rec["cam_identity_max_abs_err"] < 1e-3
    assert_localization_consistent(rec["localization"], 56)  # default canvas: twice the 28 px digits
    assert "![Class activation maps](cam.png)" in (results / "cam.md").read_text()
    # What is drawn: 3 images, each beside its top-1 and top-2 class's CAM overlaid on it, each
    # CAM scaled to exactly its own range [0, 1], on a 0..1 colour bar.
    (fig,) = demo_scale["cam_figure"]
    grid = panels(fig)
    assert sorted(grid) == [(r, c) for r in range(3) for c in range(3)]
    images = [grid[r, 0].images[0].get_array() for r in range(3)]
    assert not np.array_equal(images[0], images[1])
    for r in range(3):
        probs = []
        for c in (1, 2):
            base, cam = grid[r, c].images
            np.testing.assert_array_equal(base.get_array(), images[r])  # overlaid on the row's own image
            assert cam.get_clim() == (0.0, 1.0) and cam.get_alpha() == 0.5
            assert float(cam.get_array().min()) == 0.0 and float(cam.get_array().max()) == pytest.approx(1.0)
            title = re.fullmatch(rf"top-{c}: (\S+) \(p (\S+)\)", grid[r, c].get_title())
            assert title, grid[r, c].get_title()
            probs.append((title[1], float(title[2])))
        assert probs[0][0] != probs[1][0] and probs[0][1] >= probs[1][1] and probs[0][1] + probs[1][1] <= 1.0 + 1e-6
    (bar,) = [ax for ax in fig.axes if ax.get_subplotspec() is None]
    assert bar.get_ylim() == (0.0, 1.0) and "CAM" in bar.get_ylabel()


def assert_figure4_frames_the_true_class(fig, names: list[str]) -> None:
    """Row i shows the first test image of class i; exactly one map per row is framed (green), the
    true class's; each row's maps are scaled to that row's max (1.0), with at most the top 10 % drawn."""
    grid = panels(fig)
    k = len(names)
    assert [grid[0, c + 1].get_title() for c in range(k)] == names
    for r in range(k):
        framed = [c for c in range(k) if grid[r, c + 1].spines["top"].get_edgecolor() == mcolors.to_rgba("limegreen")]
        assert framed == [r], (r, framed)
        assert grid[r, 0].get_ylabel().startswith(f"true {names[r]}\npred ")
        row = np.stack([np.asarray(grid[r, c + 1].images[0].get_array()) for c in range(k)])
        assert row.min() >= 0.0 and row.max() == pytest.approx(1.0)
        # The top 10 % over the row's maps: fewer than 10 % lie above the smallest drawn value (all
        # values tied with the threshold are drawn).
        assert np.sum(row > row[row > 0].min()) < 0.10 * row.size
        assert all(grid[r, c + 1].images[0].get_clim() == (0.0, 1.0) for c in range(k))


def test_draw_figure4_frames_the_true_class_and_scales_each_row_to_its_max(tmp_path, drawn):
    from nin_repro.figures import draw_figure4

    maps = np.zeros((2, 4, 4, 3), np.float32)
    maps[0, 1, 2, 1], maps[0, 0, 0, 2] = 8.0, 2.0  # image 0: its max, 8, in class b's map
    maps[1, 3, 3, 0] = 0.5
    images = np.stack([np.full((4, 4, 1), 7, np.uint8), np.full((4, 4, 1), 9, np.uint8)])
    draw_figure4(images, maps, np.array([2, 0]), np.array([1, 0]), ["a", "b", "c"], tmp_path / "f.png", "T", "Cap.")
    (fig,) = drawn
    grid = panels(fig)
    green = mcolors.to_rgba("limegreen")
    assert [[c for c in range(3) if grid[r, c + 1].spines["left"].get_edgecolor() == green] for r in range(2)] == [[2], [0]]
    assert [grid[r, 0].get_ylabel() for r in range(2)] == ["true c\npred b", "true a\npred a"]
    assert [grid[0, c].get_title() for c in range(4)] == ["image", "a", "b", "c"]
    expected = {(0, 1): ((1, 2), 1.0), (0, 2): ((0, 0), 0.25), (1, 0): ((3, 3), 1.0)}  # value / the image's max
    for r in range(2):
        np.testing.assert_array_equal(grid[r, 0].images[0].get_array(), images[r, :, :, 0])
        for c in range(3):
            drawn_map = np.asarray(grid[r, c + 1].images[0].get_array())
            want = np.zeros((4, 4), np.float32)
            if (r, c) in expected:
                want[expected[r, c][0]] = expected[r, c][1]
            np.testing.assert_array_equal(drawn_map, want)
    (bar,) = [ax for ax in fig.axes if ax.get_subplotspec() is None]
    assert bar.get_ylim() == (0.0, 1.0) and "top 10 %" in bar.get_ylabel()
    assert any(t.get_text() == "Cap. Green frame: true class." for t in fig.texts)


def test_figure4_uses_the_saved_gap_run_and_measures_localization(demo_scale, capsys, drawn):
    runs, results = demo_scale["runs"], demo_scale["results"]
    assert main(["figure4", "--workdir", str(runs), "--results-dir", str(results), "--canvas", "40"]) == 0
    assert "using the saved run" in capsys.readouterr().err
    rec = json.loads((results / "figure4.json").read_text())
    assert rec["run"].endswith("analysis/gap/seed_0")
    # The same parameters on the same test images: the run's own recorded error.
    assert rec["test_error"] == json.loads((runs / "analysis" / "gap" / "seed_0" / "run.json").read_text())["result"]["test_error"]
    assert_localization_consistent(rec["localization"], 40)
    (fig,) = drawn
    assert_figure4_frames_the_true_class(fig, [str(c) for c in range(10)])


def test_figure4_on_a_smoke_run_is_captioned_and_skips_localization(smoke_cifar10, tmp_path, drawn):
    run_dir = smoke_cifar10["table"]["variants"][0]["run_dirs"][0]
    assert main(["figure4", "--run", run_dir, "--results-dir", str(tmp_path)]) == 0
    md = (tmp_path / "smoke" / "figure4.md").read_text()
    assert "untrained smoke model — not evidence" in md.lower()
    assert "Localization: not measured" in md
    (fig,) = drawn
    assert_figure4_frames_the_true_class(fig, list(load_experiment("cifar10").TABLE.class_names))
    assert any("untrained smoke model — not evidence" in t.get_text().lower() for t in fig.texts)


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


def test_plot_draws_several_runs_and_rejects_a_folder_without_metrics(demo_scale, tmp_path, capsys, drawn):
    a = demo_scale["runs"] / "analysis"
    out = tmp_path / "curves.png"
    assert main(["plot", str(a / "gap" / "seed_0"), str(a / "fc" / "seed_0"), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    (fig,) = drawn
    loss_ax, err_ax, lr_ax = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["training loss", "test error (%)", "learning rate"] and lr_ax.get_yscale() == "log"
    for variant, loss_line, err_line in zip(("gap", "fc"), loss_ax.lines, err_ax.lines):
        metrics = [json.loads(line) for line in (a / variant / "seed_0" / "metrics.jsonl").read_text().splitlines()]
        assert err_line.get_label() == loss_line.get_label() == f"analysis/{variant} seed 0"
        np.testing.assert_allclose(loss_line.get_ydata(), [m["train_loss"] for m in metrics])
        np.testing.assert_allclose(err_line.get_ydata(), [100 * m["test_error"] for m in metrics if m.get("test_error") is not None])
        np.testing.assert_array_equal(err_line.get_xdata(), [m["epoch"] for m in metrics if m.get("test_error") is not None])
    # Beside the figure, what it shows: the runs, their labels and the epochs drawn.
    record = json.loads((tmp_path / "curves.json").read_text())
    assert record["analysis"] == "curves" and record["figure"] == "curves.png" and "commit" in record["provenance"]
    assert [(r["run_dir"], r["label"], r["epochs"]) for r in record["runs"]] == [
        (str(a / v / "seed_0"), f"analysis/{v} seed 0", len((a / v / "seed_0" / "metrics.jsonl").read_text().splitlines())) for v in ("gap", "fc")
    ]
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
    assert "Epochs to reach 5 % test error" in md and "shortened: 0.25 of 8 epochs" in md


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
