"""Result tables: numbers, verdicts, placement of smoke/shortened runs, JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest
from nin_repro.experiments.cifar10 import nin as nin_cifar10

from nin_repro import results as R
from nin_repro.recipe import PaperRow, Table, Variant, load_experiment

PROV = {"commit": "abc123", "device": {"kind": "cpu", "platform": "cpu", "count": 1}, "versions": {"python": "3"}, "date": "2026-01-01T00:00:00+00:00", "hostname": "h"}


def make_table() -> Table:
    recipe = dataclasses.replace(load_experiment("cifar10").RECIPE, model=nin_cifar10().scaled(0.1), ours=("warm-up 5 epochs",))
    return Table(
        name="cifar10",
        title="Table 1: CIFAR-10 test error",
        source="tiagotvv/ml-papers summary [S]",
        rows=(
            PaperRow("Stochastic Pooling", 15.13, "[11] Zeiler & Fergus 2013"),
            PaperRow("NIN + Dropout", 10.41, "", variant="nin"),
            PaperRow("Conv. maxout | Dropout", 9.38, "[8] Goodfellow et al. 2013"),
            PaperRow("NIN + Dropout + Data Augmentation", 8.81, "", variant="nin_aug"),
        ),
        variants=(Variant("nin", "NIN + Dropout", recipe), Variant("nin_aug", "NIN + Dropout + Data Augmentation", recipe), Variant("demo", "Demo net", recipe)),
        tolerance_pp=0.5,
        notes=("a table note",),
    )


def vr(key="nin", method="NIN + Dropout", errors=(10.5, 10.7, 10.9), shortened=None, **kw) -> R.VariantResult:
    base = dict(
        key=key,
        method=method,
        errors_pct=tuple(errors),
        seeds=tuple(range(len(errors))),
        epochs=260.0,
        planned_epochs=260.0,
        steps=101_400,
        wall_s=3725.0,
        train_img_per_s=4321.0,
        schedule="paper",
        ours=("warm-up 5 epochs",),
        shortened=shortened,
        run_dirs=tuple(f"runs/{key}/seed{i}" for i in range(len(errors))),
        data_source="cache:/c/cifar10.npz",
        num_test=10000,
    )
    base.update(kw)
    return R.VariantResult(**base)


def table_lines(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| ")]


def row_for(md: str, text: str) -> list[str]:
    rows = [line for line in table_lines(md) if text in line]
    assert len(rows) == 1, rows
    return [c.strip() for c in rows[0].strip().strip("|").split(" | ")]


def test_mean_std_and_format():
    m, s = R.mean_std([10.0, 11.0, 12.0])
    assert m == pytest.approx(11.0) and s == pytest.approx(1.0)  # sample std, ddof=1
    assert R.mean_std([10.41]) == (10.41, None)
    assert R.format_mean_std([10.0, 11.0, 12.0]) == "11.00 ± 1.00 (n=3)"
    assert R.format_mean_std([10.406]) == "10.41 (n=1, std n/a)"
    assert R.format_mean_std([1.0, 2.0]) == "1.50 ± 0.71 (n=2)"
    with pytest.raises(ValueError):
        R.mean_std([])


def test_variant_result_validates():
    with pytest.raises(ValueError):
        vr(errors=(10.0, 11.0), seeds=(0,))
    with pytest.raises(ValueError):
        vr(errors=(float("nan"),))


def test_full_table_rows_delta_and_verdict(tmp_path):
    table = make_table()
    res = [vr(errors=(10.5, 10.7, 10.9)), vr("nin_aug", "NIN + Dropout + Data Augmentation", errors=(7.9, 8.1)), vr("demo", "Demo net", errors=(3.0,))]
    md_path, json_path = R.write_table(table, res, tmp_path, prov=PROV)
    assert md_path == tmp_path / "cifar10.md" and json_path == tmp_path / "cifar10.json"
    md = md_path.read_text()
    assert md.startswith("# Table 1: CIFAR-10 test error\n")
    assert "tiagotvv/ml-papers summary [S]" in md
    rows = table_lines(md)
    assert len(rows) == 1 + 4 + 1  # header, 4 paper rows, 1 demo row
    # Paper order, every paper number present.
    for i, (name, err) in enumerate([("Stochastic Pooling", "15.13"), ("NIN + Dropout", "10.41"), ("Conv. maxout", "9.38"), ("Data Augmentation", "8.81")]):
        assert name in rows[1 + i] and f"| {err} |" in rows[1 + i]
    other = row_for(md, "Stochastic Pooling")
    assert other == ["Stochastic Pooling [11] Zeiler & Fergus 2013", "15.13", "", "", "", ""]
    assert "Conv. maxout \\| Dropout" in md  # pipes escaped
    nin = row_for(md, "**NIN + Dropout**")
    assert nin[2] == "10.70 ± 0.20 (n=3)"
    assert nin[3] == "+0.29" and nin[4] == "yes"
    assert nin[5] == "paper, 260/260 epochs, seeds 0,1,2"
    aug = row_for(md, "**NIN + Dropout + Data Augmentation**")
    assert aug[2] == "8.00 ± 0.14 (n=2)" and aug[3] == "-0.81" and aug[4] == "no"
    demo = row_for(md, "**Demo net**")
    assert demo[1] == "—" and demo[2] == "3.00 (n=1, std n/a)" and demo[3] == "—" and demo[4] == "—"
    assert "[ours] warm-up 5 epochs" in md and "a table note" in md
    assert "abc123" in md and "seed 1: 10.70%" in md and "1h02m" in md and "cache:/c/cifar10.npz" in md
    data = json.loads(json_path.read_text())
    v = {x["key"]: x for x in data["variants"]}
    assert v["nin"]["delta"] == pytest.approx(10.7 - 10.41) and v["nin"]["within_tolerance"] is True
    assert v["nin_aug"]["within_tolerance"] is False and v["demo"]["within_tolerance"] is None and v["demo"]["delta"] is None
    assert v["nin"]["std"] == pytest.approx(0.2)
    assert [r["error"] for r in data["paper_rows"]] == [15.13, 10.41, 9.38, 8.81]
    assert data["smoke"] is False and data["full_run"] is True and data["provenance"] == PROV
    assert data["table"]["tolerance_pp"] == 0.5


def test_not_run_rows(tmp_path):
    md_path, _ = R.write_table(make_table(), [vr()], tmp_path, prov=PROV)
    md = md_path.read_text()
    assert row_for(md, "**NIN + Dropout + Data Augmentation**")[2] == "not run"
    assert row_for(md, "**Demo net**")[2] == "not run"


def test_json_round_trip_full_precision(tmp_path):
    orig = [vr(errors=(10.123456789, 10.987654321), overrides=("batch_size=256",)), vr("demo", "Demo net", errors=(1 / 3,), shortened="shortened: 2 of 260 epochs")]
    _, json_path = R.write_table(make_table(), orig, tmp_path, prov=PROV)
    assert R.load_results(json_path) == orig
    md = (tmp_path / "cifar10.md").read_text()
    assert "overrides: batch_size=256" in row_for(md, "**NIN + Dropout**")[0]


def test_smoke_goes_to_smoke_dir_and_is_marked(tmp_path):
    short = "smoke: synthetic data, tiny widths, 60 steps"
    md_path, json_path = R.write_table(make_table(), [vr(errors=(88.0,), shortened=short)], tmp_path, smoke=True, prov=PROV)
    assert md_path == tmp_path / "smoke" / "cifar10.md" and json_path.parent == tmp_path / "smoke"
    assert not (tmp_path / "cifar10.md").exists() and not (tmp_path / "cifar10.json").exists()
    nin = row_for(md_path.read_text(), "**NIN + Dropout**")
    assert nin[0] == f"**NIN + Dropout** ({short})"
    assert nin[3] == "n/a (smoke)" and nin[4] == "n/a (smoke)"
    data = json.loads(json_path.read_text())
    assert data["smoke"] is True and data["variants"][0]["within_tolerance"] is None


def test_shortened_does_not_replace_full_and_full_replaces_shortened(tmp_path):
    table = make_table()
    main_md, main_json = R.write_table(table, [vr(errors=(10.5,))], tmp_path, prov=PROV)
    full_text = main_json.read_text()
    short = vr(errors=(30.0,), epochs=12.0, shortened="shortened: 12 of 260 epochs")
    md, js = R.write_table(table, [short], tmp_path, prov=PROV)
    assert md == tmp_path / "partial" / "cifar10.md" and js == tmp_path / "partial" / "cifar10.json"
    assert main_json.read_text() == full_text  # the full run is untouched
    row = row_for(md.read_text(), "**NIN + Dropout**")
    assert "shortened: 12 of 260 epochs" in row[0] and row[3] == "n/a (shortened)" and row[4] == "n/a (shortened)"
    assert "12/260 epochs" in row[5]
    # Smoke never touches the main table either.
    R.write_table(table, [short], tmp_path, smoke=True, prov=PROV)
    assert main_json.read_text() == full_text

    # In an empty folder a shortened run writes the main table; a full run then replaces it.
    other = tmp_path / "other"
    md, js = R.write_table(table, [short], other, prov=PROV)
    assert js == other / "cifar10.json" and json.loads(js.read_text())["full_run"] is False
    md, js = R.write_table(table, [short], other, prov=PROV)  # shortened replaces shortened
    assert js == other / "cifar10.json"
    md, js = R.write_table(table, [vr(errors=(10.2,))], other, prov=PROV)
    assert js == other / "cifar10.json" and json.loads(js.read_text())["full_run"] is True
    assert "n/a" not in row_for(md.read_text(), "**NIN + Dropout**")[3]
    # A full run also replaces a full run.
    md, js = R.write_table(table, [vr(errors=(10.3,))], tmp_path, prov=PROV)
    assert js == main_json and R.load_results(js)[0].errors_pct == (10.3,)

    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_table_without_paper_rows(tmp_path):
    t = make_table()
    demo = dataclasses.replace(t, name="demo", rows=(), variants=t.variants[2:])
    md_path, json_path = R.write_table(demo, [vr("demo", "Demo net", errors=(2.0, 4.0))], tmp_path, prov=PROV)
    rows = table_lines(md_path.read_text())
    assert len(rows) == 2
    assert row_for(md_path.read_text(), "**Demo net**")[1:5] == ["—", "3.00 ± 1.41 (n=2)", "—", "—"]
    assert json.loads(json_path.read_text())["paper_rows"] == []


def test_from_runs_converts_fraction_to_percent():
    from nin_repro.train import RunResult

    t = make_table()
    runs = [
        RunResult(seed=s, test_error=e, test_loss=0.5, num_test=10000, steps=100, epochs=0.5, wall_s=2.0, train_img_per_s=v, run_dir=f"d{s}")
        for s, e, v in [(0, 0.1041, 100.0), (1, 0.1, 300.0)]
    ]
    r = R.VariantResult.from_runs(t.variant("nin"), runs, planned_epochs=260, shortened="shortened: 0.5 of 260 epochs", data_source="synthetic")
    assert r.errors_pct == pytest.approx((10.41, 10.0)) and r.seeds == (0, 1)
    assert r.wall_s == 4.0 and r.train_img_per_s == 200.0 and r.run_dirs == ("d0", "d1") and r.ours == ("warm-up 5 epochs",)


def test_provenance_never_raises(monkeypatch):
    p = R.provenance()
    assert set(p) >= {"commit", "device", "versions", "date", "hostname"}
    assert p["commit"] == "unknown" or len(p["commit"].split("-")[0]) == 40
    assert p["versions"]["jax"] != "unknown" and p["date"].endswith("+00:00")

    def boom(*a, **k):
        raise OSError("no git")

    monkeypatch.setattr(R.subprocess, "run", boom)
    assert R.provenance()["commit"] == "unknown"


@pytest.mark.parametrize(
    "record",
    [
        {"table": "x", "variants": []},
        {"table": {"title": "T"}, "variants": [{"method": "m"}]},
        {"table": {"title": "T"}, "variants": [{"method": "m", "errors_pct": ["a"], "seeds": [0], "epochs": 1, "planned_epochs": 1}]},
    ],
)
def test_report_skips_a_damaged_table_json_with_a_warning(tmp_path, capsys, record):
    from nin_repro.cli import main

    (tmp_path / "stray.json").write_text(json.dumps(record))
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    assert "stray.json skipped in the summary" in capsys.readouterr().err
    assert "no table has been run yet" in (tmp_path / "README.md").read_text()


def test_provenance_is_dirty_for_code_changes_not_for_results_the_commands_wrote(tmp_path, monkeypatch):
    # `make analysis-demo` runs several commands: the first one's results/ must not mark the next dirty.
    import subprocess

    from nin_repro import provenance as P

    (tmp_path / "nin_repro").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "nin_repro" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "demo.md").write_text("old\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    monkeypatch.setattr(P, "__file__", str(tmp_path / "nin_repro" / "provenance.py"))
    head = P._commit()
    assert len(head) == 40
    (tmp_path / "results" / "demo.md").write_text("new\n")
    assert P._commit() == head
    (tmp_path / "nin_repro" / "code.py").write_text("x = 2\n")
    assert P._commit() == head + "-dirty"
