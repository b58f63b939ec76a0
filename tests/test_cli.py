"""The CLI end to end: the smoke table, errors as one line with exit codes, no TensorFlow on the
training path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nin_repro.cli import main
from nin_repro.recipe import load_experiment

REPO = Path(__file__).resolve().parents[1]


def test_smoke_table_has_every_paper_row(smoke_cifar10):
    table = smoke_cifar10["table"]
    paper = {r["method"]: r["error"] for r in table["paper_rows"]}
    assert paper == {r.method: r.error for r in load_experiment("cifar10").TABLE.rows}  # the numbers themselves: test_ablations, against docs/paper-notes.md
    md = (smoke_cifar10["results"] / "smoke" / "cifar10.md").read_text()
    for method, err in paper.items():
        assert method in md and f"{err:.2f}" in md


def test_smoke_rows_are_marked_and_learn(smoke_cifar10):
    table = smoke_cifar10["table"]
    md = (smoke_cifar10["results"] / "smoke" / "cifar10.md").read_text()
    assert table["smoke"] is True
    assert md.count("(smoke:") >= 2
    variants = {v["key"]: v for v in table["variants"]}
    assert set(variants) == {"nin_dropout", "nin_dropout_aug"}
    for v in variants.values():
        assert v["shortened"].startswith("smoke")
        assert v["within_tolerance"] is None  # a smoke number is never a reproduction
    # Chance is 90 %: on the 500 test images a model at chance scores 90 +- 1.3 % (binomial); both
    # rows learn the synthetic classes clearly (measured: 9.2 % and 19.6 %).
    assert variants["nin_dropout"]["mean"] < 50.0
    assert variants["nin_dropout_aug"]["mean"] < 50.0
    # Smoke output never lands in the real results folder.
    assert not (smoke_cifar10["results"] / "cifar10.md").exists()
    # Without --baselines the baseline rows are named and not run: nothing trained for them.
    baselines = [v for v in load_experiment("cifar10").TABLE.variants if v.baseline]
    assert {v.key for v in baselines} == {"maxout_dropout", "maxout_dropout_aug", "stochastic_pooling"}
    assert md.count("not run (run with --baselines)") == len(baselines)
    assert sorted(p.name for p in (smoke_cifar10["runs"] / "smoke" / "cifar10").iterdir() if p.is_dir()) == ["nin_dropout", "nin_dropout_aug"]
    assert table["full_run"] is False


def test_smoke_baseline_row_beside_the_nin_row(smoke_cifar10, tmp_path):
    """--baselines --rows: a baseline row trained (tiny widths, 2 epochs) into the NIN table, the
    finished NIN row restored from its run folder, both with a number in the same table."""
    import shutil

    from nin_repro.recipe import SMOKE_BASELINE_EPOCHS, SMOKE_BATCH
    from nin_repro.reproduce import SMOKE_TRAIN

    runs = tmp_path / "runs" / "smoke" / "cifar10"
    shutil.copytree(smoke_cifar10["runs"] / "smoke" / "cifar10" / "nin_dropout", runs / "nin_dropout")
    args = ["cifar10", "--smoke", "--baselines", "--rows", "nin_dropout,stochastic_pooling", "--results-dir", str(tmp_path / "results"), "--workdir", str(tmp_path / "runs")]
    assert main(args) == 0
    table = json.loads((tmp_path / "results" / "smoke" / "cifar10.json").read_text())
    variants = {v["key"]: v for v in table["variants"]}
    assert set(variants) == {"nin_dropout", "stochastic_pooling"}
    nin = next(v for v in smoke_cifar10["table"]["variants"] if v["key"] == "nin_dropout")
    assert variants["nin_dropout"]["errors_pct"] == nin["errors_pct"]  # restored, not trained again
    sp = variants["stochastic_pooling"]
    assert sp["paper_error"] == 15.13 and sp["steps"] == SMOKE_BASELINE_EPOCHS * (SMOKE_TRAIN // SMOKE_BATCH) and 0 <= sp["mean"] <= 100
    md = (tmp_path / "results" / "smoke" / "cifar10.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| **Stochastic Pooling**"))
    assert "smoke: synthetic data, 2 epochs" in row and f"{sp['mean']:.2f}" in row
    assert md.count("not run (run with --baselines)") == 2  # the two maxout rows


def test_smoke_error_equals_a_fresh_evaluation_of_saved_parameters(smoke_cifar10):
    from nin_repro.recipe import SMOKE_BATCH, SMOKE_EPOCHS
    from nin_repro.reproduce import SMOKE_TRAIN, reevaluate, smoke_dataset

    ds = smoke_dataset(load_experiment("cifar10").RECIPE)
    variant = next(v for v in smoke_cifar10["table"]["variants"] if v["key"] == "nin_dropout")
    run_dir = Path(variant["run_dirs"][0])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["seed"] == 0 and record["smoke"] is True
    err = reevaluate(run_dir, ds.x_test, ds.y_test)
    assert 100 * err == pytest.approx(variant["errors_pct"][0])
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == record["result"]["steps"] == SMOKE_EPOCHS * (SMOKE_TRAIN // SMOKE_BATCH)


def test_help_lists_the_tables(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "cifar10" in out and "Table 1" in out and "demo" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["cifar10", "--seeds", "0"], "--seeds must be a positive"),
        (["cifar10", "--epochs", "-1"], "--epochs must be positive"),
        (["cifar10", "--batch-size", "0"], "--batch-size must be positive"),
        (["cifar10", "--recipe", "cosine"], "unknown --recipe"),
        (["no-such-table"], "No such command"),
        (["cifar10", "--seeds", "abc"], "Invalid value for '--seeds'"),
        (["cifar10", "--rows", "nin_dropout,nin_gap"], "--rows: unknown row 'nin_gap' for cifar10; choose from nin_dropout, nin_dropout_aug"),
    ],
)
def test_bad_usage_is_one_line_exit_2(args, message, capsys, tmp_path):
    code = main(args + ["--results-dir", str(tmp_path / "r")] if args[0] == "cifar10" else args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_missing_data_without_download_says_where_to_put_files(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    code = main(
        [
            "cifar10",
            "--epochs",
            "1",
            "--no-download",
            "--data-dir",
            str(data),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--results-dir",
            str(tmp_path / "r"),
            "--workdir",
            str(tmp_path / "w"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "cifar-10-batches-py" in err and str(data) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_data_dir_that_is_not_a_folder(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code = main(["cifar10", "--epochs", "1", "--data-dir", str(f), "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")])
    assert code == 2 and "is not a folder" in capsys.readouterr().err


NO_TF_SCRIPT = r"""
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
sys.path.insert(0, REPO)
from pathlib import Path
from tests.test_data import write_cifar10
from nin_repro.registry import register_experiments
register_experiments()  # nin_repro.experiments from this checkout, installed or not
from nin_repro.data import load_dataset
from nin_repro.preprocess import fit_preprocessor
import dataclasses
from nin_repro.recipe import load_experiment
from nin_repro.experiments.cifar10 import nin as nin_cifar10
from nin_repro.train import PreparedData, train_and_evaluate

tmp = Path(TMP)
write_cifar10(tmp / "data" / "cifar-10-batches-py", n=8)
ds = load_dataset("cifar10", data_dir=tmp / "data", cache_dir=tmp / "cache", download=False)
assert ds.source.startswith("files:"), ds.source
pre = fit_preprocessor("gcn_zca", ds.x_train)
data = PreparedData(pre.apply(ds.x_train), ds.y_train, pre.apply(ds.x_test), ds.y_test, 10, ds.source)
recipe = dataclasses.replace(load_experiment("cifar10").RECIPE, model=nin_cifar10().scaled(0.05), batch_size=8, epochs=1, augment=True)
result = train_and_evaluate(recipe, data, tmp / "run", seed=0)
assert result.steps == 5, result
assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules if sys.modules[m] is not None)
print("OK", result.steps)
"""


def test_training_path_never_imports_tensorflow(tmp_path):
    """A fresh interpreter where importing TensorFlow fails reads original CIFAR-10 files,
    preprocesses them and trains an epoch."""
    script = f"REPO = {str(REPO)!r}\nTMP = {str(tmp_path)!r}\n" + NO_TF_SCRIPT
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK 5" in proc.stdout


@pytest.mark.parametrize("name, chance", [("mnist", 90.0), ("cifar100", 99.0), ("svhn", 90.0)])
def test_other_tables_smoke(name, chance, tmp_path):
    results = tmp_path / "results"
    assert main([name, "--smoke", "--results-dir", str(results), "--workdir", str(tmp_path / "runs")]) == 0
    table = json.loads((results / "smoke" / f"{name}.json").read_text())
    experiment = load_experiment(name).TABLE
    assert [(r["method"], r["error"]) for r in table["paper_rows"]] == [(r.method, r.error) for r in experiment.rows]
    assert [v["key"] for v in table["variants"]] == list(experiment.rows_to_run(False))  # no --baselines: the NIN rows
    for variant in table["variants"]:
        assert variant["shortened"].startswith("smoke") and variant["within_tolerance"] is None
        assert variant["mean"] < chance - 10.0


def test_data_download_verify_where(tmp_path, capsys):
    from tests.test_data import write_mnist

    write_mnist(tmp_path / "data", n_train=20, n_test=5)
    cache = tmp_path / "cache"
    assert main(["data", "download", "mnist", "--data-dir", str(tmp_path / "data"), "--cache-dir", str(cache)]) == 0
    assert "20 train / 5 test images from files:" in capsys.readouterr().out
    assert main(["data", "verify", "mnist", "--cache-dir", str(cache)]) == 0
    assert "mnist: ok" in capsys.readouterr().out
    with open(cache / "mnist.npz", "ab") as f:
        f.write(b"damage")
    assert main(["data", "verify", "mnist", "--cache-dir", str(cache)]) == 1
    captured = capsys.readouterr()
    assert "checksum mismatch" in captured.out and "nin-repro data download mnist" in captured.err
    assert main(["data", "where", "cifar10", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert str(cache / "cifar10.npz") in out and "cifar-10-batches-py" in out
    assert main(["data", "verify", "nope"]) == 2


def test_eval_command_reproduces_the_recorded_error(smoke_cifar10, capsys):
    variant = next(v for v in smoke_cifar10["table"]["variants"] if v["key"] == "nin_dropout_aug")
    assert main(["eval", variant["run_dirs"][0]]) == 0
    out = capsys.readouterr().out
    assert f"test error {variant['errors_pct'][0]:.2f}%" in out and "equals the recorded" in out
    record = json.loads((Path(variant["run_dirs"][0]) / "eval.json").read_text())
    assert record["equal"] and record["test_error"] * 100 == pytest.approx(variant["errors_pct"][0], abs=1e-9)
    assert main(["eval", str(smoke_cifar10["root"])]) == 2


def test_ablation_commands_write_tables_claims_and_figure(tmp_path, drawn):
    # One epoch each: this checks the tables, claims and figure, not learning (the other smoke tests do).
    results = tmp_path / "results"
    for name in ("ablate-dropout", "ablate-gap"):
        assert main([name, "--smoke", "--epochs", "1", "--results-dir", str(results), "--workdir", str(tmp_path / "runs")]) == 0
    gap = json.loads((results / "smoke" / "ablate-gap.json").read_text())
    assert [r["error"] for r in gap["paper_rows"]] == [r.error for r in load_experiment("ablate_gap").TABLE.rows]
    assert len(gap["variants"]) == 6 and gap["claims"]
    assert all("smoke" in c["status"] for c in gap["claims"])
    md = (results / "smoke" / "ablate-gap.md").read_text()
    assert "GAP < FC + Dropout < FC" in md
    drop = json.loads((results / "smoke" / "ablate-dropout.json").read_text())
    assert len(drop["variants"]) == 2 and drop["claims"]
    png = results / "smoke" / "ablate-dropout.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    # The figure: each variant's test error at its one epoch is the error its row reports (the same final evaluation).
    (fig,) = [f for f in drawn if f.axes[0].get_title() == drop["table"]["title"]]
    tests = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].lines if line.get_linestyle() == "-"}
    assert tests == {f"{v['method']}: test error": ([1], [pytest.approx(v["errors_pct"][0])]) for v in drop["variants"]}
    assert "ablate-dropout.png" in (results / "smoke" / "README.md").read_text()


def test_unwritable_results_dir_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["mnist", "--smoke", "--results-dir", str(blocker / "results"), "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to --results-dir" in err and "Traceback" not in err
    assert not (tmp_path / "w" / "smoke" / "mnist" / "nin_dropout").exists()  # nothing was trained


def test_device_out_of_memory_suggests_a_smaller_batch(tmp_path, capsys, monkeypatch):
    import nin_repro.train as train
    from nin_repro.recipe import SMOKE_BATCH

    def out_of_memory(*args, **kwargs):
        def step(*a, **k):
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123 bytes.")

        return step

    monkeypatch.setattr(train, "make_train_steps", out_of_memory)
    train._program.cache_clear()
    code = main(["mnist", "--smoke", "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")])
    train._program.cache_clear()
    err = capsys.readouterr().err
    assert code == 1 and f"ran out of memory at batch size {SMOKE_BATCH}" in err and "--batch-size" in err
    assert not (tmp_path / "r" / "smoke" / "mnist.json").exists()


def test_dry_run_prints_images_and_a_measured_estimate(tmp_path, capsys, monkeypatch):
    from nin_repro import estimate
    from nin_repro.recipe import SMOKE_BATCH, SMOKE_EPOCHS
    from nin_repro.reproduce import SMOKE_TRAIN

    monkeypatch.setattr(estimate, "measure", lambda recipe: (1024.0, 1))  # a real one: tests/test_console.py
    args = ["mnist", "--smoke", "--dry-run", "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w"), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0
    out = capsys.readouterr().out
    e, b, n = SMOKE_EPOCHS, SMOKE_BATCH, SMOKE_TRAIN
    seconds = e * n / 1024  # the images at the measured 1,024 img/s
    assert f"| mnist/nin_dropout | NIN + Dropout | 1 x {e} | " in out
    assert f"| {e * n:,} | 1,024 | measured now (1 step of batch {b}) | {seconds:.1f}s | {3 * seconds:.1f}s (3 attempts) |" in out
    assert "maxout" not in out  # the baseline rows: only with --baselines
    assert main([*args, "--baselines"]) == 0
    out = capsys.readouterr().out
    for key in ("maxout_dropout", "stochastic_pooling"):  # their smoke: 2 epochs of 24 steps, then img/s and its estimate
        assert f"| mnist/{key} | " in out and f"| 1 x 2 | {2 * n:,} | " in out.split(f"| mnist/{key} | ")[1].splitlines()[0]
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


def test_an_interrupt_outside_the_training_loop_exits_130_not_0(tmp_path, monkeypatch, capsys):
    """Typer turns a KeyboardInterrupt (e.g. Ctrl-C while the data loads) into 130; main used to drop it and exit 0."""
    import nin_repro.reproduce as rep
    from nin_repro.cli import main

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(rep, "reproduce", interrupted)
    assert main(["mnist", "--smoke", "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_help_works_without_a_home_directory(monkeypatch, capsys):
    from pathlib import Path

    from nin_repro.cli import main

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    for var in ("HOME", "NIN_REPRO_CACHE", "XDG_CACHE_HOME", "JAX_COMPILATION_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert main(["--help"]) == 0
    assert "init-study" in capsys.readouterr().out


def test_eval_refuses_a_run_whose_preprocessing_file_changed(smoke_cifar10, tmp_path, capsys):
    import shutil

    variant = next(v for v in smoke_cifar10["table"]["variants"] if v["key"] == "nin_dropout")
    run = tmp_path / "run"
    shutil.copytree(variant["run_dirs"][0], run, ignore=shutil.ignore_patterns("checkpoints"))
    record = json.loads((run / "run.json").read_text())
    pre = tmp_path / "pre.npz"
    shutil.copy(record["preprocess"]["path"], pre)
    record["preprocess"]["path"] = str(pre)
    (run / "run.json").write_text(json.dumps(record))
    assert main(["eval", str(run)]) == 0  # an exact copy evaluates
    pre.write_bytes(pre.read_bytes() + b"\0")
    assert main(["eval", str(run)]) == 2
    assert "changed since" in capsys.readouterr().err
