"""Why the paper's MNIST recipe stalls, and the smallest change that makes it learn (not a paper table).

Command: ``nin-repro init-study`` (every variant x 8 seeds x 8 epochs of 4,000 real digits, 248
steps each: a few minutes on one GPU, about 10 minutes per variant on a 2-core CPU, so ``--only``
picks variants; ``--seeds 2 --epochs 0.25 --width 0.25`` checks the command in a minute). Writes
``results/init-study.md`` and ``.json``; the signal scale at init is computed for every variant.

Every variant is the MNIST recipe of ``experiments/mnist.py`` as published (full width, N(0, 0.05)
in every layer, ReLU after cccp6, SGD LR 0.1 with biases 2x and cccp6 0.1x, batch 128) trained for
the first ``EPOCHS`` epochs of its schedule (the LR is constant there) on the 4,000 / 1,000 shipped
real digits, changed in exactly one thing: the input (the first group), or, on the author's input,
one training detail (the second group). The third group is the CIFAR-10 recipe (GCN + ZCA) on the
same digits in CIFAR's shape, a proxy for its input scale, not CIFAR-10.

Dropout form (docs/paper-notes.md, "Dropout"): the variants without a prefix use inverted dropout,
the form the committed study (results/init-study.md) was measured with before the author's form
was found; their keys keep that meaning. The ``author_`` variants are the same recipes with the
author's dropout (unscaled in training, x(1 - p) at test), the form of every paper row: each input
reading, the CIFAR-10 proxy, and the candidates for the MNIST table's departure (issue: a departure
that learns on every seed).
"""

import dataclasses

from nin_repro.recipe import Recipe

from .cifar10 import RECIPE as CIFAR10_RECIPE
from .mnist import PUBLISHED as MNIST_AUTHOR

# The study's first groups were measured with inverted dropout; they keep it so their committed
# numbers keep their meaning. Every other change is made to this base, one at a time.
MNIST_PUBLISHED = dataclasses.replace(MNIST_AUTHOR, model=dataclasses.replace(MNIST_AUTHOR.model, dropout_form="inverted"))
CIFAR10_INVERTED = dataclasses.replace(CIFAR10_RECIPE, model=dataclasses.replace(CIFAR10_RECIPE.model, dropout_form="inverted"))

SEEDS = tuple(range(8))
EPOCHS = 12.0  # the issue asks >= 12 epochs of the shipped digits (372 steps); the committed rows before this change ran 8


def _first_epochs(recipe: Recipe, **changes) -> Recipe:
    """``recipe`` on the shipped digits for the first EPOCHS epochs of its schedule (constant LR)."""
    base = dict(dataset="digits5k", paper_phases=((EPOCHS, 1.0),), seeds=SEEDS, attempts=1)
    return dataclasses.replace(recipe, **{**base, **changes})


def _model(recipe: Recipe, **changes):
    return dataclasses.replace(recipe.model, **changes)


def _cccp6_std(recipe: Recipe, std: float):
    last = recipe.model.blocks[-1]
    blocks = recipe.model.blocks[:-1] + (dataclasses.replace(last, init_std=(last.init_std[0], last.init_std[1], std)),)
    return _model(recipe, blocks=blocks)


AUTHOR_INPUT = "pixel_mean"  # Min Lin's MnistDataProvider on 0-255 batches (docs/paper-notes.md, "MNIST input")

# (key, group, what changes, recipe)
VARIANTS: tuple[tuple[str, str, str, Recipe], ...] = (
    ("input_scale01", "input", "pixels / 255 (our earlier default)", _first_epochs(MNIST_PUBLISHED, preprocess="scale01")),
    (
        "input_pixel_mean",
        "input",
        "0-255 pixels minus the per-pixel training mean (the author's data provider on 0-255 batches)",
        _first_epochs(MNIST_PUBLISHED, preprocess="pixel_mean"),
    ),
    (
        "input_pixel_mean01",
        "input",
        "[0, 1] pixels minus the per-pixel training mean (the data provider on pylearn2's [0, 1] MNIST; the table's reading)",
        _first_epochs(MNIST_PUBLISHED, preprocess="pixel_mean01"),
    ),
    ("input_gcn", "input", "per-image GCN to per-pixel RMS 1", _first_epochs(MNIST_PUBLISHED, preprocess="gcn")),
    ("input_standardize", "input", "(pixel - mean) / std over the training set", _first_epochs(MNIST_PUBLISHED, preprocess="standardize")),
    *(
        (f"{AUTHOR_INPUT}_{key}", "departure", what, _first_epochs(MNIST_PUBLISHED, preprocess=AUTHOR_INPUT, **changes))
        for key, what, changes in (
            ("warmup", "linear LR warm-up over the first epoch", dict(warmup_epochs=1.0)),
            ("lr_low_first", "LR / 10 for the first epoch", dict(paper_phases=((1.0, 0.1), (EPOCHS - 1, 1.0)))),
            ("cccp6_std", "cccp6 init std 0.005 (the others 0.05)", dict(model=_cccp6_std(MNIST_PUBLISHED, 0.005))),
            ("he_init", "He-normal init in every layer", dict(model=MNIST_PUBLISHED.model.with_he_init(final_relu=True))),
            ("no_final_relu", "no ReLU after cccp6", dict(model=_model(MNIST_PUBLISHED, final_relu=False))),
        )
    ),
    ("pixel_mean_lr_0.01", "departure", "LR 0.01 throughout (the published 0.1 / 10)", _first_epochs(MNIST_PUBLISHED, preprocess=AUTHOR_INPUT, base_lr=0.01)),
    ("pixel_mean01_lr_0.01", "departure", "[0, 1] pixels minus the mean, LR 0.01 throughout", _first_epochs(MNIST_PUBLISHED, preprocess="pixel_mean01", base_lr=0.01)),
    (
        "scale01_he_lr_0.01",
        "two changes",
        "pixels / 255, He-normal init, LR 0.01",
        _first_epochs(MNIST_PUBLISHED, preprocess="scale01", base_lr=0.01, model=MNIST_PUBLISHED.model.with_he_init(final_relu=True)),
    ),
    (
        "pixel_mean_no_final_relu_lr_0.01",
        "two changes",
        "no ReLU after cccp6, LR 0.01",
        _first_epochs(MNIST_PUBLISHED, preprocess=AUTHOR_INPUT, base_lr=0.01, model=_model(MNIST_PUBLISHED, final_relu=False)),
    ),
    (
        "standardize_he_no_final_relu_lr_0.01",
        "more changes",
        "standardized pixels, He-normal init, no ReLU after cccp6, LR 0.01",
        _first_epochs(MNIST_PUBLISHED, preprocess="standardize", base_lr=0.01, model=MNIST_PUBLISHED.model.with_he_init(final_relu=False)),
    ),
    (
        "standardize_he_no_final_relu_adam",
        "more changes",
        "standardized pixels, He-normal init, no ReLU after cccp6, Adam 0.003 (the demo's recipe at full width)",
        _first_epochs(
            MNIST_PUBLISHED, preprocess="standardize", optimizer="adam", base_lr=0.003, classifier_lr_mult=1.0, model=MNIST_PUBLISHED.model.with_he_init(final_relu=False)
        ),
    ),
    ("cifar10_gcn_zca", "cifar10", "the CIFAR-10 recipe (GCN 55 + ZCA 0.1) on the digits as 32x32x3 (a proxy)", _first_epochs(CIFAR10_INVERTED, dataset="digits5k_rgb32")),
)

_HE_NO_FINAL_RELU = MNIST_AUTHOR.model.with_he_init(final_relu=False)

# The same questions with the author's dropout, the form of every paper row.
AUTHOR_VARIANTS: tuple[tuple[str, str, str, Recipe], ...] = (
    *(
        (f"author_input_{kind}", "author input", f"{what}; the author's dropout", _first_epochs(MNIST_AUTHOR, preprocess=kind))
        for kind, what in (
            ("scale01", "pixels / 255"),
            ("pixel_mean", "0-255 pixels minus the per-pixel training mean"),
            ("pixel_mean01", "[0, 1] pixels minus the per-pixel training mean (the MNIST table's reading)"),
            ("gcn", "per-image GCN to per-pixel RMS 1"),
            ("standardize", "(pixel - mean) / std over the training set"),
        )
    ),
    (
        "author_cifar10_gcn_zca",
        "cifar10",
        "the CIFAR-10 recipe as the table runs it (GCN + ZCA, the author's dropout) on the digits as 32x32x3 (a proxy)",
        _first_epochs(CIFAR10_RECIPE, dataset="digits5k_rgb32"),
    ),
    # Candidates for the MNIST table's departure [ours], each with the author's dropout.
    (
        "author_standardize_he_no_final_relu_adam",
        "author departure",
        "the table's departure (standardized pixels, He-normal init, no ReLU after cccp6, Adam 0.003) with the author's dropout",
        _first_epochs(MNIST_AUTHOR, preprocess="standardize", optimizer="adam", base_lr=0.003, classifier_lr_mult=1.0, model=_HE_NO_FINAL_RELU),
    ),
    (
        "author_standardize_he_no_final_relu_adam_0.001",
        "author departure",
        "as above with Adam LR 0.001",
        _first_epochs(MNIST_AUTHOR, preprocess="standardize", optimizer="adam", base_lr=0.001, classifier_lr_mult=1.0, model=_HE_NO_FINAL_RELU),
    ),
    (
        "author_standardize_he_no_final_relu_sgd_0.01",
        "author departure",
        "standardized pixels, He-normal init, no ReLU after cccp6, SGD LR 0.01 (the paper's optimizer, multipliers kept)",
        _first_epochs(MNIST_AUTHOR, preprocess="standardize", base_lr=0.01, model=_HE_NO_FINAL_RELU),
    ),
    (
        "author_standardize_he_no_final_relu_sgd_0.03",
        "author departure",
        "as above with SGD LR 0.03",
        _first_epochs(MNIST_AUTHOR, preprocess="standardize", base_lr=0.03, model=_HE_NO_FINAL_RELU),
    ),
    (
        "author_pixel_mean_no_final_relu_lr_0.01",
        "author departure",
        "0-255 pixels minus the mean, no ReLU after cccp6, SGD LR 0.01 (the paper's init kept)",
        _first_epochs(MNIST_AUTHOR, preprocess=AUTHOR_INPUT, base_lr=0.01, model=dataclasses.replace(MNIST_AUTHOR.model, final_relu=False)),
    ),
)

VARIANTS = VARIANTS + AUTHOR_VARIANTS
