"""Auxiliary classifiers on NIN (ours, not in the paper): does a GoogLeNet-style auxiliary head
help the GAP network train?

Command: ``nin-repro ablate-aux`` (2 rows x 3 seeds x 260 epochs of CIFAR-10: run it on a GPU;
``--smoke`` checks the pipeline; ``--demo`` runs both rows on the 5,000 real digits of
``nin-repro demo`` in about two minutes on a CPU).

Both rows are Table 1's NIN + Dropout recipe. The auxiliary row adds, after mlpconv block 2 (its
pool and dropout), a 1x1 conv to one map per class + global average pooling, whose
cross-entropy, weighted 0.3, is added to the loss during training (GoogLeNet's weight); it is
discarded at inference, so both rows have the same 966,986 inference parameters. Reported: the
final test error and the first epoch at which the test error reaches a stated target.
"""

import dataclasses

from nin_repro.data import CIFAR10_CLASSES, DIGIT_CLASSES
from nin_repro.recipe import Table, Variant

from . import demo
from .cifar10 import RECIPE

# The command `nin-repro ablate-aux` (nin_repro.recipe.table_commands reads these two without importing the file).
COMMAND_HELP = "Ours: a GoogLeNet-style auxiliary classifier after block 2 (loss weight 0.3, dropped at inference), CIFAR-10; --demo on 5k digits."
COMMAND_ORDER = 7

AUX_OURS = (
    "auxiliary head (not in the paper): 1x1 conv (He-normal init, bias 0) to one map per class + GAP after "
    "block 2, loss weight 0.3 during training (GoogLeNet's), discarded at inference; the main loss is what metrics report",
)


def with_aux(recipe):
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, aux_after=1, aux_weight=0.3), ours=recipe.ours + AUX_OURS)


TABLE = Table(
    name="ablate-aux",
    title="Auxiliary classifier after block 2 (ours, not a paper table): test error (%) on CIFAR-10",
    source="no paper number: an ablation of ours (GoogLeNet-style auxiliary head on the NIN of Table 1)",
    rows=(),
    variants=(
        Variant("nin_gap", "NIN + GAP (Table 1 recipe)", RECIPE),
        Variant("nin_gap_aux", "NIN + GAP + auxiliary head (weight 0.3)", with_aux(RECIPE)),
    ),
    tolerance_pp=0.0,
    target_error_pct=15.0,
    notes=("The target error (15 %) for 'epochs to reach' is ours: a level the Table 1 recipe passes well before its first LR drop.",),
    class_names=CIFAR10_CLASSES,
)

DEMO_TABLE = Table(
    name="ablate-aux-demo",
    title="Auxiliary classifier after block 2 (ours), demo scale: test error (%) on 1,000 real digits",
    source="no paper number: the ablation of `nin-repro ablate-aux` on the demo's network and 5k digits",
    rows=(),
    variants=(
        Variant("nin_gap", "NIN + GAP (demo recipe)", demo.RECIPE),
        Variant("nin_gap_aux", "NIN + GAP + auxiliary head (weight 0.3)", with_aux(demo.RECIPE)),
    ),
    tolerance_pp=0.0,
    target_error_pct=5.0,
    notes=("Demo scale: 4,000 training digits, 8 epochs, one seed unless --seeds; the target error (5 %) is ours.",),
    class_names=DIGIT_CLASSES,
    scale="demo",
)
