"""The MNIST table's recipe learns on real images: full width, on the 4,000 / 1,000 shipped digits.

One seed, a fixed step budget: 10 epochs of 4,000 digits, the schedule's three LR phases scaled to
them (8 + 1 + 1), <= 5 % error on the 1,000 held-out digits (2.7 % at commit 80ff960; 8 epochs in
all gave 6.3 % at an earlier commit). The recipe is the table's second row (ours: the published one
stalls on most seeds, results/init-study.md); everything but the data and the schedule's length is
the table's.
"""

import dataclasses

from nin_repro.recipe import load_experiment
from nin_repro.reproduce import Options, load_table_data, prepare
from nin_repro.train import train_and_evaluate

EPOCHS = 10
STEP_BUDGET = EPOCHS * (4000 // 128)


def test_the_mnist_table_recipe_reaches_95_percent_on_1000_held_out_real_digits(tmp_path):
    table = load_experiment("mnist").TABLE
    recipe = table.variant("nin_dropout_ours").recipe
    assert recipe.model.blocks[0].widths == (96, 64, 48)  # full width, the paper's MNIST net
    recipe = dataclasses.replace(recipe, dataset="digits5k", paper_phases=((8, 1.0), (1, 0.1), (1, 0.01)), seeds=(0,))
    data, _ = prepare(load_table_data(recipe, Options()), recipe, tmp_path)
    assert (len(data.x_train), len(data.x_test)) == (4000, 1000)
    result = train_and_evaluate(recipe, data, tmp_path / "seed_0", seed=0, eval_every=0)  # the test error at the end only
    assert result.steps == STEP_BUDGET and result.stalled is None
    assert result.num_test == 1000 and result.test_error <= 0.05, result.test_error
