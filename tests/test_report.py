"""nin_repro.report: results/README.md rebuilt from the table JSONs in the folder, with the numbers
worked out by hand here; a damaged JSON is skipped (with a warning when it is a table) and never
stops the others from being summarised."""

from __future__ import annotations

import json

from nin_repro.report import render_report, write_report


def variant(method, errors, paper, delta, within, *, epochs=200, planned=200, shortened=None, wall_s=0.0):
    return {
        "method": method,
        "errors_pct": errors,
        "seeds": list(range(len(errors))),
        "epochs": epochs,
        "planned_epochs": planned,
        "paper_error": paper,
        "delta": delta,
        "within_tolerance": within,
        "shortened": shortened,
        "wall_s": wall_s,
    }


def write_tables(folder):
    folder.mkdir(parents=True, exist_ok=True)
    cifar = {
        "table": {"name": "cifar10", "title": "Table 1: CIFAR-10"},
        "provenance": {"device": {"kind": "NVIDIA H100", "count": 1}},
        "variants": [
            variant("NIN + Dropout", [10.0, 11.0, 12.0], 10.41, 0.59, True, wall_s=3000.0),
            variant("NIN + Dropout + Data Augmentation", [9.5], 8.81, 0.69, False, epochs=20, shortened="shortened: 20 of 200 epochs", wall_s=700.0),
        ],
    }
    mnist = {
        "table": {"name": "mnist", "title": "Table 4: MNIST"},
        "smoke": True,
        "provenance": {"device": {"kind": "cpu", "count": 2}},
        "variants": [variant("NIN + Dropout", [40.0, 44.0], 0.47, 41.53, None, epochs=8, planned=8, shortened="smoke: tiny", wall_s=12.5)],
    }
    (folder / "cifar10.json").write_text(json.dumps(cifar))
    (folder / "mnist.json").write_text(json.dumps(mnist))
    (folder / "figure4.json").write_text(json.dumps({"analysis": "figure4", "caption": "demo model"}))
    (folder / "cifar10.png").write_bytes(b"\x89PNG")


def rows(md: str) -> list[list[str]]:
    lines = [line for line in md.splitlines() if line.startswith("| [")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_report_builds_one_line_per_row_from_the_table_jsons(tmp_path):
    write_tables(tmp_path)
    out = write_report(tmp_path)
    assert out == tmp_path / "README.md"
    md = out.read_text()
    assert md == render_report(tmp_path)
    assert rows(md) == [
        # mean of 10, 11, 12 = 11.00; sample std = 1.00; full length: the delta is shown
        ["[Table 1: CIFAR-10](cifar10.md)", "NIN + Dropout", "10.41", "11.00 ± 1.00 (n=3)", "+0.59", "yes", "full, 200/200 epochs, 3 seed(s)"],
        # shortened: not a reproduction, so no delta
        ["[Table 1: CIFAR-10](cifar10.md)", "NIN + Dropout + Data Augmentation", "8.81", "9.50 (n=1, std n/a)", "—", "no", "shortened, 20/200 epochs, 1 seed(s)"],
        # mean 42, sample std sqrt(8) = 2.83
        ["[Table 4: MNIST](mnist.md)", "NIN + Dropout", "0.47", "42.00 ± 2.83 (n=2)", "—", "n/a", "smoke, 8/8 epochs, 2 seed(s)"],
    ]
    # 3000 + 700 + 12.5 s = 3712.5 s = 1 h 01 min 53 s (rounded)
    assert "Total wall time: 1h01m. Devices: NVIDIA H100 x1, cpu x2." in md
    assert "- [Figure 4: class maps](figure4.md): demo model" in md
    assert "## Figures\n\n- [cifar10.png](cifar10.png)" in md


def test_an_empty_folder_says_no_table_has_run(tmp_path):
    md = write_report(tmp_path).read_text()
    assert rows(md) == [] and "| — | no table has been run yet |" in md and "Total wall time: 0.0s. Devices: n/a." in md


def test_damaged_jsons_are_skipped_and_the_other_tables_still_summarised(tmp_path, capsys):
    write_tables(tmp_path)
    good = rows(write_report(tmp_path).read_text())
    capsys.readouterr()
    (tmp_path / "half-written.json").write_text('{"table": {"title": "Table 2"}, "variants": [{"meth')  # cut off mid-write
    broken = {"table": {"title": "Table 3: SVHN"}, "variants": [variant("NIN", [2.0], 2.35, -0.35, True)]}
    broken["variants"][0]["errors_pct"] = "2.0"  # a string where a list of numbers belongs
    (tmp_path / "svhn.json").write_text(json.dumps(broken))
    (tmp_path / "notes.json").write_text(json.dumps({"anything": 1}))  # not a table: ignored quietly
    md = write_report(tmp_path).read_text()
    assert rows(md) == good
    assert "Table 3" not in md and "Table 2" not in md
    err = capsys.readouterr().err
    assert f"warning: {tmp_path / 'svhn.json'} skipped in the summary: a variant's 'errors_pct' is missing or mistyped" in err
    assert "notes.json" not in err
    assert f"warning: {tmp_path / 'half-written.json'} skipped in the summary: not readable JSON" in err


def test_a_demo_scale_table_is_marked_demo_never_full(tmp_path):
    # A full-length run of a demo-scale table (scale "demo") is not a reproduction: status "demo".
    demo = {"table": {"name": "demo", "title": "Demo", "scale": "demo"}, "variants": [variant("NIN on 5k digits", [3.0], None, None, None, epochs=12, planned=12)]}
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    [row] = rows(render_report(tmp_path))
    assert row[-1] == "demo, 12/12 epochs, 1 seed(s)" and "Only full rows are reproductions; demo" in render_report(tmp_path)


def test_a_plot_record_is_listed_with_the_analyses_and_links_its_figure(tmp_path):
    (tmp_path / "curves.json").write_text(json.dumps({"analysis": "curves", "caption": "training curves of demo/nin seed 0", "figure": "curves.png"}))
    assert "- [Training curves](curves.png): training curves of demo/nin seed 0" in render_report(tmp_path)
    # An analysis with a page of its own links the page, not its figure.
    (tmp_path / "cam.json").write_text(json.dumps({"analysis": "cam", "caption": "demo model", "figure": "cam.png"}))
    (tmp_path / "cam.md").write_text("# CAM\n")
    assert "- [Class activation maps](cam.md): demo model" in render_report(tmp_path)
