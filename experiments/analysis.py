"""Demo-scale models the analysis commands (`figure4`, `cam`, `gap-claims`) train themselves when
no saved table run is found. Not a paper table and not a command of its own.

Each is the demo's network (``experiments/demo.py``: the paper's MNIST NIN at 3/8 width, He init,
Adam, 8 epochs at batch 32 on 4,000 real digits, about 30 s on 2 CPU cores) with a different head; every
departure from the paper is the demo's, listed in its ``ours``. Run folders:
``<workdir>/analysis/<variant>/seed_0``.
"""

import dataclasses

from nin_repro.data import DIGIT_CLASSES
from nin_repro.recipe import Table, Variant

from .demo import MODEL, RECIPE

FC = dataclasses.replace(
    RECIPE,
    model=dataclasses.replace(MODEL, head="fc"),
    ours=RECIPE.ours + ("FC head: one fully connected layer 490 -> 10 on the flattened 7x7x10 last maps (the same trunk as GAP)",),
)
# GAP -> Dense for class activation maps (Zhou et al. 2016): 32 ReLU'd feature maps, averaged,
# then a Dense layer to the classes.
_blocks = MODEL.blocks[:-1] + (dataclasses.replace(MODEL.blocks[-1], widths=(48, 36, 32)),)
GAP_DENSE = dataclasses.replace(
    RECIPE,
    model=dataclasses.replace(MODEL, blocks=_blocks, head="gap_dense", final_relu=True),
    ours=RECIPE.ours + ("GAP -> Dense head (CAM): the last 1x1 conv gives 32 ReLU'd maps, averaged, then Dense 32 -> 10",),
)

TABLE = Table(
    name="analysis",
    title="Demo-scale models for the analysis commands (not a paper table)",
    source="no paper number",
    rows=(),
    variants=(
        Variant("gap", "NIN + GAP (demo scale)", RECIPE),
        Variant("fc", "NIN + FC (demo scale)", FC),
        Variant("gap_dense", "NIN + GAP -> Dense (demo scale)", GAP_DENSE),
    ),
    tolerance_pp=0.0,
    class_names=DIGIT_CLASSES,
    scale="demo",
)
