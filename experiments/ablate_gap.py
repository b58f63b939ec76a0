"""Table 5 and Sec. 4.6 of Lin, Chen & Yan (ICLR 2014): global average pooling vs fully connected
layers, CIFAR-10 test error.

Command: ``nin-repro ablate-gap`` (6 rows x 3 seeds x 260 epochs: run it on a GPU; ``--smoke``
checks the pipeline).

Table 5 (NIN body): the CIFAR-10 recipe of ``experiments/cifar10.py`` with its GAP head swapped
for one fully connected layer on the flattened 8x8x10 output of the last mlpconv block, without
and with dropout (0.5) before it; everything else, dropout between the mlpconv blocks included,
is unchanged (docs/paper-notes.md, 'Paper tables').

Sec. 4.6 (conventional CNN): the paper fixes only "three convolutional layers and one locally
connected layer"; the local layer's 16 maps go to an FC layer (with dropout in Hinton et al.'s
setting), and for GAP the local layer has 10 maps that are averaged (docs/paper-notes.md, 'Paper tables' (Section 4.6), §8). Our sizes,
the same in the three rows, follow cuda-convnet's conv-local CIFAR-10 configs: conv 5x5 64 ->
max pool 3/2 -> conv 5x5 64 -> max pool 3/2 -> conv 3x3 64 -> locally connected 3x3 at 8x8
(16 maps, or 10 for GAP) -> FC / FC + dropout / GAP. 745,354 parameters with the FC heads,
513,536 with GAP. The paper's 15.99 (FC + dropout) is quoted from Hinton et al. 2012, not re-run
by the authors; we run all three rows.
"""

import dataclasses

from nin_repro.data import CIFAR10_CLASSES
from nin_repro.models import ConvNetConfig, ConvSpec
from nin_repro.recipe import Claim, PaperRow, Table, Variant

from .cifar10 import RECIPE

# The command `nin-repro ablate-gap` (nin_repro.recipe.table_commands reads these two without importing the file).
COMMAND_HELP = "Table 5 and Sec. 4.6: GAP vs FC (+ dropout) heads on the NIN body and on a conventional CNN, CIFAR-10."
COMMAND_ORDER = 5


def cnn(head: str = "fc", **overrides) -> ConvNetConfig:
    """Our sizes for the Sec. 4.6 CNN [ours], in the cuda-convnet conv-local CIFAR-10 lineage
    (``layers-conv-local-*``): conv 5x5 64 -> max pool 3/2 -> conv 5x5 64 -> max pool 3/2 ->
    conv 3x3 64 -> locally connected 3x3 (16 maps; 10 for the GAP head) at 8x8 -> head; ReLU after
    the local layer, He-normal init, FC init N(0, 0.01), dropout 0.5 for "fc_dropout"; no response
    normalization."""
    convs = (ConvSpec(5, 64, "max"), ConvSpec(5, 64, "max"), ConvSpec(3, 64, "none"))
    local = overrides.pop("local_features", overrides.get("num_classes", 10) if head == "gap" else 16)
    fields = dict(convs=convs, dropout_form="author", local_kernel=3, local_features=local, in_channels=3, input_hw=(32, 32), num_classes=10, head=head)
    fields.update(head_dropout=0.5, final_relu=True, init_std=None, head_init_std=0.01)
    return ConvNetConfig(**{**fields, **overrides})


NIN_FC = dataclasses.replace(
    RECIPE,
    model=dataclasses.replace(RECIPE.model, head="fc"),
    ours=RECIPE.ours
    + (
        "FC head: one fully connected layer 640 -> 10 on the flattened 8x8x10 output of cccp6 (ReLU kept), "
        "init N(0, 0.05), bias 0; it takes cccp6's 0.1x learning rate (it now produces the class scores)",
    ),
)
NIN_FC_DROPOUT = dataclasses.replace(
    NIN_FC,
    model=dataclasses.replace(RECIPE.model, head="fc_dropout", head_dropout=0.5),
    ours=NIN_FC.ours + ("dropout rate 0.5 before the FC layer (the rate of the other dropout layers)",),
)

_CNN_OURS = (
    "Sec. 4.6 CNN sizes (the paper gives none): conv 5x5 64 (pad 2) -> max pool 3x3/2 -> conv 5x5 64 (pad 2) -> "
    "max pool 3x3/2 -> conv 3x3 64 (pad 1) -> locally connected 3x3 (pad 1, unshared weights and biases) at 8x8 "
    "with 16 maps (10 for GAP); ReLU after every conv and after the local layer; no response normalization; "
    "the same in the three CNN rows",
    "CNN init: He-normal for conv and local kernels, N(0, 0.01) for the FC layer, biases 0",
    "CNN training: the NIN recipe's data (GCN + ZCA), batch 128, SGD momentum 0.9, weight decay 1e-4, biases 2x LR, "
    "200 + 30 + 30 epochs, but base LR 0.01 and no 0.1x multiplier on the classifier",
) + RECIPE.ours[:1]  # data order, as for NIN
CNN_FC = dataclasses.replace(RECIPE, model=cnn("fc"), base_lr=0.01, classifier_lr_mult=1.0, ours=_CNN_OURS)
CNN_FC_DROPOUT = dataclasses.replace(CNN_FC, model=cnn("fc_dropout"), ours=_CNN_OURS + ("dropout 0.5 on the local layer's output, before the FC layer",))
CNN_GAP = dataclasses.replace(
    CNN_FC,
    model=cnn("gap"),
    ours=_CNN_OURS + ("GAP: the local layer's 10 maps (after ReLU, as cccp6 in NIN) averaged over 8x8 are the class scores",),
)

TABLE = Table(
    name="ablate-gap",
    title="Table 5 and Sec. 4.6: global average pooling vs fully connected layers, test error (%) on CIFAR-10",
    source=(
        "Lin, Chen & Yan, Network In Network, ICLR 2014: Table 5 (NIN rows; two independent summaries agree) and "
        "Sec. 4.6 text (conventional CNN rows) [R in docs/paper-notes.md, 'Paper tables']"
    ),
    rows=(
        PaperRow("NIN + FC (mlpconv + fully connected)", 11.59, "this paper, Table 5", variant="nin_fc"),
        PaperRow("NIN + FC + Dropout", 10.88, "this paper, Table 5", variant="nin_fc_dropout"),
        PaperRow("NIN + GAP (global average pooling)", 10.41, "this paper, Table 5", variant="nin_gap"),
        PaperRow("Conventional CNN + FC, no dropout", 17.56, "this paper, Sec. 4.6", variant="cnn_fc"),
        PaperRow(
            "Conventional CNN + FC + Dropout",
            15.99,
            "quoted in Sec. 4.6 from Hinton et al. 2012; not re-run by the authors",
            variant="cnn_fc_dropout",
        ),
        PaperRow("Conventional CNN + GAP", 16.46, "this paper, Sec. 4.6", variant="cnn_gap"),
    ),
    variants=(
        Variant("nin_fc", "NIN + FC", NIN_FC),
        Variant("nin_fc_dropout", "NIN + FC + Dropout", NIN_FC_DROPOUT),
        Variant("nin_gap", "NIN + GAP", RECIPE),
        Variant("cnn_fc", "Conventional CNN + FC", CNN_FC),
        Variant("cnn_fc_dropout", "Conventional CNN + FC + Dropout", CNN_FC_DROPOUT),
        Variant("cnn_gap", "Conventional CNN + GAP", CNN_GAP),
    ),
    tolerance_pp=1.0,
    claims=(
        Claim(
            "order",
            ("nin_gap", "nin_fc_dropout", "nin_fc"),
            "NIN: GAP < FC + Dropout < FC",
            "Global average pooling gives the lowest test error of the three NIN heads; the FC layer without dropout the highest (paraphrase of Table 5)",
            "Table 5 [R]",
        ),
        Claim(
            "order",
            ("cnn_gap", "cnn_fc"),
            "CNN: GAP < FC (no dropout)",
            "Global average pooling acts as a structural regularizer: replacing the FC layer by GAP lowers the test error "
            "of the conventional CNN without dropout (paraphrase of Sec. 4.6)",
            "Sec. 4.6 [R]",
        ),
        Claim(
            "order",
            ("cnn_fc_dropout", "cnn_gap"),
            "CNN: FC + Dropout < GAP",
            "Dropout before the FC layer regularizes slightly better than GAP in the conventional CNN (the paper's numbers, 15.99 vs 16.46; the 15.99 is quoted, not re-run)",
            "Sec. 4.6 [R]",
        ),
    ),
    notes=(
        "Tolerance +-1.0 pp is ours. The conventional CNN's sizes are ours (the paper gives only its layer types), so its "
        "absolute errors are not expected to match the paper's; the claims below (orderings) are what this table checks.",
        "The paper's CNN + FC + Dropout number (15.99) is quoted by the authors from Hinton et al. 2012's setting, not re-run "
        "by them; we run it with our sizes like the other two CNN rows.",
        "The NIN + GAP row is Table 1's NIN + Dropout recipe unchanged.",
    ),
    class_names=CIFAR10_CLASSES,
)
