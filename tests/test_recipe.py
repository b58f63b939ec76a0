"""nin_repro.recipe: a Recipe states every choice of its table (no paper defaults to fall back on)."""

import dataclasses

import pytest

from nin_repro.errors import UsageError
from nin_repro.recipe import Recipe, load_experiment

CIFAR10 = load_experiment("cifar10").RECIPE


def test_a_recipe_without_its_optimizer_and_schedule_is_refused():
    with pytest.raises(TypeError) as err:
        Recipe(dataset="cifar10", preprocess="gcn_zca", model=CIFAR10.model)
    for field in ("batch_size", "optimizer", "base_lr", "momentum", "weight_decay", "bias_lr_mult", "bias_lr_drops", "classifier_lr_mult", "schedule", "seeds"):
        assert field in str(err.value)


def test_a_schedule_needs_its_own_numbers_and_only_those():
    plateau = dataclasses.replace(CIFAR10, schedule="plateau", paper_phases=None, caffe_step_iters=None, caffe_max_iters=None, caffe_gamma=None)
    assert plateau.problems() == []
    with pytest.raises(UsageError, match="the caffe schedule needs caffe_step_iters, caffe_max_iters, caffe_gamma, which this table's experiment file does not give"):
        dataclasses.replace(plateau, schedule="caffe")
    with pytest.raises(UsageError, match="the paper schedule needs paper_phases"):
        dataclasses.replace(plateau, schedule="paper")
