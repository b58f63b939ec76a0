"""A run stopped mid-way resumes from its last checkpoint and ends exactly where an
uninterrupted run ends. The stops happen in process, from a Progress hook at a chosen step (as in
test_parallel), so the tests are deterministic: no subprocess raced with polling."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nin_repro import reproduce as rep
from nin_repro.recipe import PaperRow, Table, Variant
from tests.test_parallel import _serve_tiny_data, tiny_recipe

REPO = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Crash(Exception):
    """Stands in for SIGKILL: the run dies at once, without the checkpoint a signal would get."""


class StopAt:
    """A Progress that records what it is told and, at training step ``step``, calls ``action``."""

    def __init__(self, step: int | None = None, action=None):
        self.step, self.action, self.starts, self.steps = step, action, [], []

    def start(self, total_steps, description):
        self.starts.append(description)

    def update(self, step, **kw):
        self.steps.append(step)
        if step == self.step:
            self.action()

    def epoch_end(self, record): ...
    def close(self): ...


def _crash():
    raise Crash


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint_and_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    """3 epochs of 8 steps, a checkpoint at every epoch boundary; the run dies at step 20 (in
    epoch 3). Running it again restarts from step 16 (the last checkpoint), not from 0, and ends
    with the uninterrupted run's losses, steps and test error."""
    _serve_tiny_data(monkeypatch)
    table = Table("tiny", "Tiny", "test", (PaperRow("NIN", 10.0, "", variant="nin"),), (Variant("nin", "NIN", tiny_recipe(epochs=3)),), tolerance_pp=1.0)

    def opts(root: Path) -> rep.Options:
        return rep.Options(results_dir=root / "results", workdir=root / "runs", checkpoint_every_min=0)

    killed = tmp_path / "killed"
    with pytest.raises(Crash):
        rep.reproduce(table, opts(killed), StopAt(20, _crash))
    assert not (killed / "results" / "tiny.json").exists()  # no result from a killed run
    run = killed / "runs" / "tiny" / "nin" / "seed_0"
    saved = sorted(int(p.name) for p in run.glob("checkpoints/*/*") if p.name.isdigit())
    assert saved and max(saved) == 16, saved  # the last epoch boundary before the crash
    assert [m["epoch"] for m in _metrics(run)] == [1, 2]  # epoch 3 never ended

    again = StopAt()
    _, resumed_js = rep.reproduce(table, opts(killed), again)
    assert again.starts == ["seed 0 (resumed at step 16)"] and again.steps == list(range(17, 25))
    _, fresh_js = rep.reproduce(table, opts(tmp_path / "fresh"))
    (r,), (f,) = (json.loads(p.read_text())["variants"] for p in (resumed_js, fresh_js))
    assert r["steps"] == f["steps"] == 24
    assert r["errors_pct"] == f["errors_pct"]
    mr, mf = _metrics(run), _metrics(tmp_path / "fresh" / "runs" / "tiny" / "nin" / "seed_0")
    assert [m["epoch"] for m in mr] == [m["epoch"] for m in mf] == [1, 2, 3]
    assert [m["train_loss"] for m in mr] == [m["train_loss"] for m in mf]
    assert [m.get("test_error") for m in mr] == [m.get("test_error") for m in mf]


def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """SIGTERM at step 12 of `nin-repro mnist --smoke --epochs 1` (in process): exit code 130, one
    line saying how to resume, a checkpoint after the step in flight (13: one chunk is always queued
    ahead), no table; the same command again resumes there and finishes."""
    import nin_repro.progress
    from nin_repro.cli import main
    from nin_repro.recipe import SMOKE_BATCH
    from nin_repro.reproduce import SMOKE_TRAIN

    args = ["mnist", "--smoke", "--epochs", "1", "--results-dir", str(tmp_path / "results"), "--workdir", str(tmp_path / "runs")]
    stop = StopAt(12, lambda: os.kill(os.getpid(), signal.SIGTERM))
    monkeypatch.setattr(nin_repro.progress, "RichProgress", lambda console: stop)
    handler = signal.getsignal(signal.SIGTERM)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "stopped by SIGTERM at step 13" in err and "run the same command again to resume" in err and "Traceback" not in err
    assert stop.steps[-1] == 13  # it stopped at once, after the step already queued
    assert not (tmp_path / "results" / "smoke" / "mnist.json").exists()
    assert signal.getsignal(signal.SIGTERM) is handler  # the run gave the handler back

    again = StopAt()
    monkeypatch.setattr(nin_repro.progress, "RichProgress", lambda console: again)
    assert main(args) == 0
    assert again.starts[0].endswith("(resumed at step 13)") and again.steps[:1] == [14]
    variants = json.loads((tmp_path / "results" / "smoke" / "mnist.json").read_text())["variants"]
    assert [v["steps"] for v in variants] == [SMOKE_TRAIN // SMOKE_BATCH] * 2  # one epoch, each row


def test_two_tables_writing_one_results_folder_at_once(tmp_path):
    results = tmp_path / "results"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nin_repro", name, "--smoke", "--epochs", "1", "--results-dir", str(results), "--workdir", str(tmp_path / name)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=tmp_path,
        )
        for name in ("mnist", "cifar10")
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    for name in ("mnist", "cifar10"):
        data = json.loads((results / "smoke" / f"{name}.json").read_text())
        assert data["table"]["name"] == name and data["variants"]
    summary = (results / "smoke" / "README.md").read_text()
    assert "(mnist.md)" in summary and "(cifar10.md)" in summary  # the later summary saw both tables
    assert not [p for p in (results / "smoke").iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_names_the_fitted_preprocessing(smoke_cifar10):
    run = smoke_cifar10["runs"] / "smoke" / "cifar10" / "nin_dropout" / "seed_0"
    record = json.loads((run / "run.json").read_text())
    metas = sorted(run.glob("checkpoints/*/*/meta/metadata"))
    assert metas, list(run.rglob("*"))[:20]
    meta = json.loads(metas[-1].read_text())
    assert meta["run"]["preprocess"] == record["preprocess"] and meta["seed"] == 0
    assert meta["position"]["step"] == record["result"]["steps"]
