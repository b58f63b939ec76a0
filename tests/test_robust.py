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
