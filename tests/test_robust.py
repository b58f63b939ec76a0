"""Issue #12: nothing lost, nothing mislabelled; every failure one line with its exit code."""

from __future__ import annotations

import pytest

from nin_repro.errors import TrainingFailed
from tests.test_train import tiny_data, tiny_recipe


def test_non_finite_loss_keeps_the_previous_metrics_history(tmp_path):
    from nin_repro.train import train_and_evaluate

    train_and_evaluate(tiny_recipe(epochs=2), tiny_data(), tmp_path, seed=0)
    metrics = tmp_path / "metrics.jsonl"
    before = metrics.read_text()
    assert len(before.splitlines()) == 2
    # Another recipe in the same run folder (no checkpoint of it to resume) whose loss blows up.
    with pytest.raises(TrainingFailed, match="loss became"):
        train_and_evaluate(tiny_recipe(epochs=3, base_lr=1e30, classifier_lr_mult=1.0), tiny_data(), tmp_path, seed=0)
    assert metrics.read_text() == before


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_second_run_in_a_locked_run_folder_is_refused(tmp_path, capsys):
    import os

    from nin_repro.cli import main
    from nin_repro.runlock import run_folder_lock

    seed_dir = tmp_path / "w" / "smoke" / "mnist" / "nin_dropout" / "seed_0"
    with run_folder_lock([seed_dir]):  # as another process training the same run holds it
        code = main(["mnist", "--smoke", "--results-dir", str(tmp_path / "r"), "--workdir", str(tmp_path / "w")])
    assert code == 4
    line = _one_error_line(capsys.readouterr().err)
    assert str(seed_dir) in line and f"process {os.getpid()}" in line and "in use" in line
    assert not (seed_dir / "metrics.jsonl").exists()
    # Released when its holder lets go (or dies): the next run takes it.
    with run_folder_lock([seed_dir]):
        pass
