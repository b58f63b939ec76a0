"""Table 4 of Lin, Chen & Yan (ICLR 2014): test error on MNIST.

Command: ``nin-repro mnist`` (2 rows x 3 seeds; run it on a GPU).

Row 1, the recipe as published: the paper's MNIST network (mavenlin/cuda-convnet ``NIN/mnist_def``;
docs/paper-notes.md, 'Architecture'): 96-64-48 / 128-96-48 / 128-96-10 (5x5 convs, pad 2), max pool
3x3/2 (28 -> 14 -> 7), dropout 0.5 after blocks 1 and 2, ReLU after cccp6, 7x7 global average pool
(349,674 parameters), N(0, 0.05) in every layer; the CIFAR-10 optimizer settings (``NIN/mnist_params``
has the same epsW/epsB/wc/coeff); input: [0, 1] pixels minus the per-pixel training mean, the
author's ``MnistDataProvider`` on pylearn2's MNIST (docs/paper-notes.md, 'MNIST input'; 0-255
pixels is the other reading, measured in ``init-study``). No MNIST schedule was published ("coming
soon"): ours is the CIFAR-10 one. This recipe stalls on most seeds (results/init-study.md): each
seed is retried up to 3 times and the row says how it went.

Row 2, the recipe with our departure, measured on the shipped real digits at full width with 8
seeds (results/init-study.md, ``author_standardize_he_no_final_relu_adam``: 8 of 8 learned in 12
epochs, 3.42 +- 0.51 %, no stall): standardized pixels, He-normal init, no ReLU after cccp6, Adam (LR
0.003, decoupled weight decay 1e-4) instead of SGD; everything else as row 1, the author's dropout
included (with inverted dropout the same departure learned on 7 of 8 seeds in 8 epochs; keeping SGD at
LR 0.01 instead of Adam learned on 8 of 8 too, but to 6.67 +- 1.44 %, three times the spread). The other
departure candidates are init-study's ``author_*`` variants (a GPU run: ``nin-repro check-gpu``). No single change learned
reliably (docs/paper-notes.md, 'The dead last layer'); a smaller pair, no final ReLU + LR 0.01 on
0-255 mean-subtracted pixels (SGD and the paper's init kept), learned on 2 of 2 seeds in a short CPU
check and is listed in init-study (``pixel_mean_no_final_relu_lr_0.01``) for an 8-seed run on a GPU.
"""

import dataclasses

from nin_repro.data import DIGIT_CLASSES
from nin_repro.models import BlockSpec, NINConfig
from nin_repro.recipe import PaperRow, Table, Variant

from . import baselines_mnist
from .cifar10 import RECIPE as CIFAR10_RECIPE

# The command `nin-repro mnist` (nin_repro.recipe.table_commands reads these two without importing the file).
COMMAND_HELP = (
    "Table 4: MNIST test error, NIN + Dropout: the recipe as published, and with our departure (standardized input, He init, no final ReLU, Adam); "
    "--baselines: also conv. maxout and stochastic pooling."
)
COMMAND_ORDER = 4

INIT_STD = (0.05, 0.05, 0.05)  # initW 0.05 in every layer of NIN/mnist_def (docs/paper-notes.md, "Architecture")

MODEL = NINConfig(
    blocks=(
        BlockSpec(5, (96, 64, 48), init_std=INIT_STD, pool="max", dropout=0.5),
        BlockSpec(5, (128, 96, 48), init_std=INIT_STD, pool="max", dropout=0.5),
        BlockSpec(5, (128, 96, 10), init_std=INIT_STD, pool="none", dropout=0.0),
    ),
    dropout_form="author",  # cuda-convnet's dropout neuron (docs/paper-notes.md, "Dropout")
    in_channels=1,
    input_hw=(28, 28),
    num_classes=10,
    head="gap",
    final_relu=True,  # ReLU after cccp6, as in mnist_def
)

PUBLISHED = dataclasses.replace(
    CIFAR10_RECIPE,
    dataset="mnist",
    preprocess="pixel_mean01",  # MnistDataProvider (Python/convdata.py, lines 60-71) on pylearn2's [0, 1] MNIST
    model=MODEL,
    ours=CIFAR10_RECIPE.ours[:1]
    + (
        "schedule: the CIFAR-10 one (200 + 30 + 30 epochs); none was published for MNIST",
        "input: [0, 1] pixels minus their per-pixel training mean, our reading of the author's README and data provider "
        "(unverified: 0-255 pixels minus the mean is the other reading)",
        "trained on all 60k training images (maxout held out 10k for validation)",
    ),
)

# [ours] The departure (results/init-study.md): single changes (warm-up, LR / 10 for the first epoch,
# cccp6 std 0.005, He init, no final ReLU) left most of 8 seeds stalled or unlearned (GPU exploration).
DEPARTURE = dataclasses.replace(
    PUBLISHED,
    preprocess="standardize",
    # The author's dropout, kept from row 1: with it this departure learned on 8 of 8 seeds in 12 epochs
    # (results/init-study.md, `author_standardize_he_no_final_relu_adam`: 3.42 +- 0.51 %), with
    # inverted dropout on 7 of 8 in 8 epochs (`standardize_he_no_final_relu_adam`).
    model=MODEL.with_he_init(final_relu=False),
    optimizer="adam",
    base_lr=0.003,
    classifier_lr_mult=1.0,
    ours=PUBLISHED.ours[:2]
    + (
        "[ours, departs from the paper] standardized pixels, He-normal init, no ReLU after cccp6, Adam (LR 0.003, "
        "decoupled weight decay 1e-4) instead of SGD; the author's dropout kept: learned on 8 of 8 seeds of real digits "
        "in 12 epochs, 3.42 +- 0.51 % (results/init-study.md, author_standardize_he_no_final_relu_adam)",
        "trained on all 60k training images (maxout held out 10k for validation)",
    ),
)

RECIPE = PUBLISHED

TABLE = Table(
    name="mnist",
    title="Table 4: test error (%) on MNIST",
    source="Lin, Chen & Yan, Network In Network, ICLR 2014, Table 4 (rows copied from a secondary summary; [S] in docs/paper-notes.md, 'Paper tables')",
    rows=(
        PaperRow("2-Layer CNN + 2-Layer NN", 0.53, "[11] Zeiler & Fergus 2013"),
        PaperRow("Stochastic Pooling", 0.47, "[11] Zeiler & Fergus 2013", variant="stochastic_pooling"),
        PaperRow("NIN + Dropout", 0.47, "this paper", variant="nin_dropout"),
        PaperRow("NIN + Dropout, with our departure (not the paper's recipe)", 0.47, "this paper's number; recipe changed by us", variant="nin_dropout_ours"),
        PaperRow("Conv. maxout + Dropout", 0.45, "[8] Goodfellow et al. 2013", variant="maxout_dropout"),
    ),
    variants=(
        Variant("nin_dropout", "NIN + Dropout", PUBLISHED),
        Variant("nin_dropout_ours", "NIN + Dropout, with our departure [ours]", DEPARTURE),
        *baselines_mnist.VARIANTS,  # --baselines (experiments/baselines_mnist.py)
    ),
    tolerance_pp=0.1,
    notes=(
        "Tolerance +-0.1 pp is ours.",
        "The paper's own note: NIN does not beat conv. maxout + dropout on MNIST.",
        "With N(0, 0.05) init the class maps start tiny and die at LR 0.1 (docs/paper-notes.md, 'The dead last layer'): "
        "a stalled seed is retried from a fresh initialisation, 3 attempts in all, and the row says how many it took.",
        "The second row departs from the paper (standardized input, He init, no final ReLU, Adam): it is ours, "
        "shown so the table has a number that learned; compare it with the paper's with that in mind.",
        *baselines_mnist.NOTES,
    ),
    class_names=DIGIT_CLASSES,
)
