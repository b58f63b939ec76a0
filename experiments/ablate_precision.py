"""Mixed precision (ours, not in the paper): does bf16 compute change NIN's test error?

Command: ``nin-repro ablate-precision`` (CIFAR-10, 2 rows x 3 seeds x 260 epochs: run it on a GPU,
where bf16 is the fast path; ``--demo`` runs both rows on the 5,000 real digits of
``nin-repro demo`` in about three minutes on a CPU, where bf16 is slower than fp32).

Both rows are the same recipe; the second computes convolutions and matrix products in bfloat16
while the parameters, the optimizer state (momentum / Adam moments), the logits and the loss stay
float32 (Flax's ``dtype`` vs ``param_dtype``). Speed is measured by ``nin-repro bench --dtype fp32
--dtype bf16``, not here.
"""

import dataclasses

from nin_repro.data import CIFAR10_CLASSES, DIGIT_CLASSES
from nin_repro.recipe import Table, Variant

from . import demo
from .cifar10 import RECIPE

# The command `nin-repro ablate-precision` (nin_repro.recipe.table_commands reads these two without importing the file).
COMMAND_HELP = "Ours: float32 vs bfloat16 compute (fp32 parameters and optimizer state), CIFAR-10; --demo on 5k digits."
COMMAND_ORDER = 8

BF16_OURS = ("bf16 compute (not in the paper): convolutions and matrix products in bfloat16; parameters, optimizer state, logits and loss in float32",)


def in_bf16(recipe):
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, dtype="bfloat16"), ours=recipe.ours + BF16_OURS)


TABLE = Table(
    name="ablate-precision",
    title="Mixed precision (ours, not a paper table): test error (%) on CIFAR-10, fp32 vs bf16 compute",
    source="no paper number: the paper trained in float32 (cuda-convnet)",
    rows=(),
    variants=(
        Variant("nin_fp32", "NIN + Dropout, float32 (Table 1 recipe)", RECIPE),
        Variant("nin_bf16", "NIN + Dropout, bfloat16 compute", in_bf16(RECIPE)),
    ),
    tolerance_pp=0.0,
    notes=("Seed-to-seed spread decides: a difference smaller than the std over seeds is no effect.",),
    class_names=CIFAR10_CLASSES,
)

DEMO_TABLE = Table(
    name="ablate-precision-demo",
    title="Mixed precision (ours), demo scale: test error (%) on 1,000 real digits, fp32 vs bf16 compute",
    source="no paper number: the ablation of `nin-repro ablate-precision` on the demo's network and 5k digits",
    rows=(),
    variants=(
        Variant("nin_fp32", "NIN (demo recipe), float32", demo.RECIPE),
        Variant("nin_bf16", "NIN (demo recipe), bfloat16 compute", in_bf16(demo.RECIPE)),
    ),
    tolerance_pp=0.0,
    notes=("Demo scale: 4,000 training digits, 8 epochs, one seed unless --seeds; on 1,000 test images one image is 0.1 pp.",),
    class_names=DIGIT_CLASSES,
    scale="demo",
)
