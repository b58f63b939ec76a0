"""What the commands print when stdout is a pipe, a file or a CI log (80 columns, not a terminal):
every column name and every number in full, never an ellipsis; and `--dry-run`'s estimates from
the step-rate cache (nin_repro/estimate.py)."""

import dataclasses
import io
import json
import shutil

import pytest
from rich.console import Console

from nin_repro import estimate
from nin_repro.cli import TABLE_COMMANDS, main
from nin_repro.console import print_table
from nin_repro.recipe import SMOKE_BATCH
from nin_repro.results.stats import format_duration

ELLIPSIS = "…"
COLUMNS = ("a long column name", "another long column name", "img/s per model", "% of ceiling (bound)", "compile (s)")
ROWS = [["train", "fp32 with a long cell", "1,234,567", "98.7 (compute)", "123.4"], ["eval", "bf16", "7,654,321", "n/a", "0.1"]]


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")


def _printed(console: Console, title="title") -> str:
    print_table(title, COLUMNS, ROWS, console)
    return console.file.getvalue()


def _all_in(out: str, cells) -> None:
    for cell in cells:
        assert cell in out, cell
    assert ELLIPSIS not in out


def test_a_table_too_wide_or_off_a_terminal_is_markdown_with_every_cell():
    piped = _printed(Console(file=io.StringIO(), width=80))
    narrow_terminal = _printed(Console(file=io.StringIO(), width=80, force_terminal=True))
    wide_terminal = _printed(Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None))
    for out in (piped, narrow_terminal):
        assert "| " + " | ".join(COLUMNS) + " |" in out and "| " + " | ".join(ROWS[0]) + " |" in out
        _all_in(out, [*COLUMNS, *ROWS[0], *ROWS[1]])
    assert "┃" in wide_terminal and "|---" not in wide_terminal  # room enough: rich's table, still every cell
    _all_in(wide_terminal, [*COLUMNS, *ROWS[0], *ROWS[1]])


def test_bench_piped_shows_every_column_and_number_and_a_dry_run_reuses_its_figure(tmp_path, capsys, monkeypatch):
    from nin_repro.bench import COLUMNS as BENCH_COLUMNS

    cache = tmp_path / "cache"
    args = ["bench", "--table", "demo", "--batch-size", "16", "--steps", "2", "--peak-tflops", "1.0", "--results-dir", str(tmp_path), "--cache-dir", str(cache)]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert {r["what"] for r in rows} == {"train", "eval"} and "img/s" in (tmp_path / "bench.md").read_text()
    for r in rows:
        assert r["img_per_s"] > 0 and r["steps"] == 2 and r["batch_size"] == 16 and r["pct_of_peak"] > 0
    numbers = [f"{r[k]:,.0f}" for r in rows for k in ("img_per_s", "img_per_s_per_model")] + [f"{r['ms_per_step']:.2f}" for r in rows]
    _all_in(out, [*BENCH_COLUMNS, *numbers, "bench.md"])

    # `ablate-aux --demo` trains the demo network: its dry run reads bench's figure and measures nothing.
    monkeypatch.setattr(estimate, "measure", lambda recipe: pytest.fail("measured, with a cached figure of this network"))
    assert main(["ablate-aux", "--demo", "--dry-run", "--batch-size", "16", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    train = next(r for r in rows if r["what"] == "train")
    _all_in(out, [*estimate.PLAN_COLUMNS, "ablate-aux-demo/nin_gap", "ablate-aux-demo/nin_gap_aux", f"{train['img_per_s']:,.0f}", "cached (bench,"])
    assert "FLOPs-scaled from bench --table demo" in out  # the auxiliary head's network: no figure of its own


def test_dry_run_shares_one_measurement_per_network_caches_it_and_prints_the_worst_case(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "a-cache-folder-with-a-name-long-enough-to-push-the-line-past-eighty-columns"
    args = ["cifar10", "--smoke", "--dry-run", "--cache-dir", str(cache), "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")]
    measured = []
    measure = estimate.measure
    monkeypatch.setattr(estimate, "measure", lambda recipe: measured.append(recipe.batch_size) or measure(recipe))
    assert main(args) == 0
    cold = capsys.readouterr().out
    assert measured == [SMOKE_BATCH]  # the two rows train the same network at the same batch size: one measurement
    assert f"measured now (1 step of batch {SMOKE_BATCH})" in cold and "measured now for cifar10/nin_dropout (same network)" in cold
    assert main(args) == 0
    warm = capsys.readouterr().out
    assert measured == [SMOKE_BATCH] and warm.count("cached (dry run,") == 2
    (entry,) = json.loads((cache / "step-rates.json").read_text()).values()
    assert entry["what"] == "cifar10/nin_dropout" and entry["batch"] == SMOKE_BATCH
    from nin_repro.recipe import load_experiment
    from nin_repro.reproduce import Options

    table = load_experiment("cifar10").TABLE
    nin_rows = dataclasses.replace(table, variants=tuple(v for v in table.variants if not v.baseline))  # what the command ran
    plans = estimate.plan(nin_rows, Options(smoke=True, cache_dir=cache))
    assert [p.attempts for p in plans] == [3, 3]
    worst = format_duration(sum(p.worst_s for p in plans))
    for out in (cold, warm):
        _all_in(out, [*estimate.PLAN_COLUMNS, "cifar10/nin_dropout_aug", f"{plans[0].images:,}", f"{plans[0].img_per_s:,.0f}", str(cache / "step-rates.json")])
        assert f"{format_duration(plans[0].worst_s)} (3 attempts)" in out and f"Worst case with retries: {worst}" in out
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


def test_networks_of_about_the_same_flops_share_a_figure_scaled_by_flops(tmp_path, capsys, monkeypatch):
    measured = []
    monkeypatch.setattr(estimate, "measure", lambda recipe: measured.append(recipe.model.head) or (1000.0, 1))
    assert main(["ablate-gap", "--dry-run", "--cache-dir", str(tmp_path)]) == 0  # nothing runs: the measurement is faked
    out = capsys.readouterr().out
    assert len(measured) == 2  # one NIN, one conventional CNN (6x fewer FLOPs: not scaled across)
    assert out.count("FLOPs-scaled from ablate-gap/nin_fc ") == 2 and out.count("FLOPs-scaled from ablate-gap/cnn_fc ") == 2


def _long(tmp_path):
    folder = tmp_path / "a-folder-with-a-long-name-as-ci-workspaces-have" / "and-another-one-below-it"
    assert len(str(folder)) > 80
    return folder


def test_report_piped_prints_every_row_and_the_whole_path(smoke_cifar10, tmp_path, capsys):
    results = _long(tmp_path) / "results"
    shutil.copytree(smoke_cifar10["results"] / "smoke", results)
    assert main(["report", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    _all_in(out, [line for line in (results / "README.md").read_text().splitlines() if line] + [f"wrote {results / 'README.md'}"])


def test_tables_and_data_where_piped_print_every_name_and_path(tmp_path, capsys):
    assert main(["tables"]) == 0
    assert capsys.readouterr().out.split() == [c.name for c in TABLE_COMMANDS]
    cache = _long(tmp_path)
    assert main(["data", "where", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    _all_in(out, [str(cache / f"{name}.npz") for name in ("cifar10", "cifar100", "svhn", "mnist")])


def test_init_study_piped_prints_its_table_and_the_whole_path(tmp_path, capsys, monkeypatch):
    # The printing only: the study itself is tests/test_study.py's (a tiny one takes a minute here).
    import nin_repro.study

    md = _long(tmp_path) / "init-study.md"
    md.parent.mkdir(parents=True)
    md.write_text("| variant | stalled seeds | mean class-score std at init |\n|---|---|---|\n| input_scale01 | 8 / 8 | 0.000123 |\n")
    monkeypatch.setattr(nin_repro.study, "run_study", lambda *a, **kw: (md, md.with_suffix(".json")))
    assert main(["init-study", "--results-dir", str(md.parent)]) == 0
    _all_in(capsys.readouterr().out, [*md.read_text().splitlines(), f"wrote {md} and {md.with_suffix('.json')}"])


def test_a_damaged_or_unwritable_rate_cache_costs_a_measurement_never_the_dry_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(estimate, "measure", lambda recipe: (500.0, 1))
    (tmp_path / "step-rates.json").write_text('{"half a fi')
    assert main(["cifar100", "--dry-run", "--cache-dir", str(tmp_path)]) == 0
    assert "| 500 | measured now (1 step of batch 128) |" in capsys.readouterr().out
    (entry,) = json.loads((tmp_path / "step-rates.json").read_text()).values()
    assert entry["img_per_s"] == 500.0 and entry["what"] == "cifar100/nin_dropout"
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    assert main(["cifar100", "--dry-run", "--cache-dir", str(blocked)]) == 0
    captured = capsys.readouterr()
    assert "measured now" in captured.out and "could not cache the measured img/s" in captured.err


def test_every_help_piped_names_every_command_and_option_in_full(capsys):
    import typer

    from nin_repro.cli import app

    def commands(group, path=()):
        yield path, group
        for name, sub in getattr(group, "commands", {}).items():
            yield from commands(sub, (*path, name))

    for path, command in commands(typer.main.get_command(app)):
        assert main([*path, "--help"]) == 0
        out = capsys.readouterr().out
        names = [opt for param in command.params if not getattr(param, "hidden", False) for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")]
        _all_in(out, [*names, *getattr(command, "commands", {})])
