"""Fig. 3 of Lin, Chen & Yan (ICLR 2014): NIN with and without dropout between the mlpconv blocks,
training and test error over the first 200 epochs on CIFAR-10.

Command: ``nin-repro ablate-dropout`` (2 rows x 3 seeds x 200 epochs: run it on a GPU). Writes
the table (final test errors; the paper gives no table, so the rows have no paper number), the
claim check, and the figure ``ablate-dropout.png`` (training and test error per epoch).

Recipe: the CIFAR-10 recipe of ``experiments/cifar10.py`` cut to its first phase, 200 epochs at
the base LR 0.1 (the figure shows the first 200 epochs); the second row has no dropout after
mlpconv blocks 1 and 2. The paper: dropout reduces the test error by more than 20 % relative.
"""

import dataclasses

from nin_repro.data import CIFAR10_CLASSES
from nin_repro.recipe import Claim, Table, Variant

from .cifar10 import RECIPE as CIFAR10_RECIPE

# The command `nin-repro ablate-dropout` (nin_repro.recipe.table_commands reads these two without importing the file).
COMMAND_HELP = "Fig. 3: NIN with and without dropout between mlpconv blocks, CIFAR-10, 200 epochs; draws the error curves."
COMMAND_ORDER = 6

RECIPE = dataclasses.replace(
    CIFAR10_RECIPE,
    paper_phases=((200, 1.0),),
    ours=CIFAR10_RECIPE.ours
    + (
        "200 epochs at the base LR 0.1 and no LR drop: Fig. 3 shows the first 200 epochs (the phase before the first drop "
        "of the 200 + 30 + 30 schedule); the final errors are those at epoch 200",
    ),
)
NO_DROPOUT = dataclasses.replace(
    RECIPE,
    model=dataclasses.replace(RECIPE.model, blocks=tuple(dataclasses.replace(b, dropout=0.0) for b in RECIPE.model.blocks)),
    ours=RECIPE.ours + ("without dropout: the dropout layers after mlpconv blocks 1 and 2 removed, nothing else changed",),
)

TABLE = Table(
    name="ablate-dropout",
    title="Fig. 3: NIN with and without dropout between mlpconv layers, CIFAR-10 (first 200 epochs)",
    source=(
        "Lin, Chen & Yan, Network In Network, ICLR 2014, Fig. 3 and its text [R in docs/paper-notes.md, 'Paper tables']; the figure's curve values "
        "are not given as numbers, so the rows have no paper error"
    ),
    rows=(),
    variants=(
        Variant("nin_dropout", "NIN + Dropout", RECIPE),
        Variant("nin_no_dropout", "NIN without dropout", NO_DROPOUT),
    ),
    tolerance_pp=0.6,
    claims=(
        Claim(
            "relative_reduction",
            ("nin_dropout", "nin_no_dropout"),
            "Dropout reduces test error by > 20 % relative",
            "Dropout between the mlpconv layers reduces the test error by more than 20 % (paraphrase of the Fig. 3 text)",
            "Fig. 3 and its text [R]",
            threshold=0.20,
        ),
    ),
    figure="error_curves",
    notes=(
        "The paper shows this comparison only as curves (Fig. 3); our figure, ablate-dropout.png, plots training and test error "
        "per epoch from the runs' metrics.jsonl (mean over seeds).",
        "With no paper numbers the rows get no tolerance verdict; the claim below is what this table checks.",
    ),
    class_names=CIFAR10_CLASSES,
)
