"""Network In Network in Flax NNX: mlpconv blocks, Caffe ceil-mode pooling, swappable heads.

The networks themselves (widths, kernels, pools, dropout, init) are written in the experiment
files, e.g. the paper's CIFAR-10 NIN in ``experiments/cifar10.py`` (``nin``).

Also the paper's Sec. 4.6 conventional CNN (``ConvNet``: convs + a locally connected layer,
``LocallyConnected2D``, with an FC, FC + dropout or GAP head). ``build_model(config, rngs=...)``
builds either network from its config; ``config_from_dict`` reads either back from JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

Pool = Literal["max", "avg", "none"]
Head = Literal["gap", "fc", "fc_dropout", "gap_dense"]
HEADS: tuple[str, ...] = ("gap", "fc", "fc_dropout", "gap_dense")
# "author": cuda-convnet's dropout neuron, the one every paper row uses (docs/paper-notes.md,
# "Dropout"): survivors pass unscaled in training, the input is multiplied by 1 - p at test.
# "inverted": survivors scaled by 1 / (1 - p) in training, nothing at test (nnx.Dropout) [ours].
DROPOUT_FORMS: tuple[str, ...] = ("author", "inverted")


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One mlpconv block: a k x k conv and two 1x1 convs, each followed by ReLU,
    then an optional 3x3/2 pool and dropout."""

    kernel: int
    widths: tuple[int, int, int]
    # N(0, std) init per conv; None = He-normal (our departure). The paper's values are in the
    # experiment files, with their sources.
    init_std: tuple[float, float, float] | None
    pool: Pool
    dropout: float


@dataclasses.dataclass(frozen=True)
class NINConfig:
    blocks: tuple[BlockSpec, ...]
    dropout_form: str  # one of DROPOUT_FORMS, for every dropout layer of the net (blocks and head)
    in_channels: int = 3
    input_hw: tuple[int, int] = (32, 32)  # training size; FC heads are built for it
    num_classes: int = 10
    head: Head = "gap"
    # ReLU after the last 1x1 conv, as in every original config (docs/paper-notes.md, "Architecture"). It is what makes
    # the "dead last layer" failure possible; removing it is a departure.
    final_relu: bool = True
    head_dropout: float = 0.5  # only for head="fc_dropout"
    head_init_std: float = 0.05  # the Dense layer of fc / gap_dense heads [ours]
    # Compute dtype for convs (parameters stay float32).
    dtype: str = "float32"
    # The max pools' gradient: "xla" (select_and_scatter) or "mask" (masks and padded adds, no
    # atomics on a GPU; the same values). A speed option [ours]; `bench --pool-grad` compares them.
    pool_grad: str = "xla"
    # Auxiliary classifier as in GoogLeNet [ours, `ablate-aux`]: a 1x1 conv to one map per class
    # + GAP after block ``aux_after`` (0-based); its loss, weighted ``aux_weight``, is added during
    # training only; inference never uses it.
    aux_after: int | None = None
    aux_weight: float = 0.3

    def __post_init__(self):
        _check_dropout(self.dropout_form, [b.dropout for b in self.blocks] + [self.head_dropout])
        if self.aux_after is not None and not 0 <= self.aux_after < len(self.blocks) - 1:
            raise ValueError(f"aux_after must name a block before the last (0..{len(self.blocks) - 2}), got {self.aux_after}")
        if self.pool_grad not in POOL_GRADS:
            raise ValueError(f"unknown pool_grad {self.pool_grad!r}; choose one of {', '.join(POOL_GRADS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.head == "gap" and self.blocks[-1].widths[-1] != self.num_classes:
            raise ValueError("with a GAP head the last 1x1 conv must output one map per class")

    def scaled(self, width_factor: float) -> "NINConfig":
        """Same network with every hidden width multiplied by width_factor (the class maps keep their number)."""
        blocks = []
        for i, b in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            widths = tuple(w if (last and j == 2 and self.head == "gap") else max(1, round(w * width_factor)) for j, w in enumerate(b.widths))
            blocks.append(dataclasses.replace(b, widths=widths))
        return dataclasses.replace(self, blocks=tuple(blocks))

    def forward_macs(self, hw: tuple[int, int] | None = None) -> int:
        """Multiply-accumulates of one forward pass on one image (padded positions counted, docs/paper-notes.md, "Architecture")."""
        h, w = hw or self.input_hw
        cin, macs = self.in_channels, 0
        for spec in self.blocks:
            c0, c1, c2 = spec.widths
            macs += h * w * (spec.kernel * spec.kernel * cin * c0 + c0 * c1 + c1 * c2)
            cin = c2
            if spec.pool != "none":
                h, w = math.ceil((h - 3) / 2) + 1, math.ceil((w - 3) / 2) + 1
        if self.head in ("fc", "fc_dropout"):
            macs += h * w * cin * self.num_classes
        elif self.head == "gap_dense":
            macs += cin * self.num_classes
        return macs

    def activation_elements(self) -> int:
        """Values per image of the input and of every conv and pool output (the tensors a training
        step writes and reads back; bench's memory ceiling)."""
        h, w = self.input_hw
        total = h * w * self.in_channels
        for spec in self.blocks:
            total += h * w * sum(spec.widths)
            if spec.pool != "none":
                h, w = math.ceil((h - 3) / 2) + 1, math.ceil((w - 3) / 2) + 1
                total += h * w * spec.widths[-1]
        return total

    def hidden_widths(self) -> tuple[int, ...]:
        """The hidden widths, whose narrowest decides the --smoke width factor: every conv's
        except the last block's output maps (one per class with the GAP head)."""
        last = len(self.blocks) - 1
        return tuple(w for i, b in enumerate(self.blocks) for w in (b.widths if i < last else b.widths[:2]))

    def with_he_init(self, final_relu: bool = False) -> "NINConfig":
        """He-normal init everywhere (our departure, used by --smoke) and the given final ReLU."""
        return dataclasses.replace(self, blocks=tuple(dataclasses.replace(b, init_std=None) for b in self.blocks), final_relu=final_relu)


def caffe_pool_padding(size: int, window: int = 3, stride: int = 2) -> tuple[int, int]:
    """(low, high) padding that reproduces Caffe's pooling: windows start at index 0, output
    size rounded up, so the last window may hang over the bottom/right edge."""
    out = math.ceil((size - window) / stride) + 1
    return 0, max(0, (out - 1) * stride + window - size)


POOL_GRADS = ("xla", "mask")


def caffe_pool(x_BHWC: jax.Array, kind: Pool, window: int = 3, stride: int = 2, grad: str = "xla") -> jax.Array:
    """Max or average pooling with Caffe's ceil-mode alignment. The average divides by the
    number of in-bounds cells (Caffe clips the window at the border). ``grad="mask"``: the max
    pool's gradient from masks and padded adds (``max_pool_mask_grad``) instead of XLA's
    select_and_scatter (atomics on a GPU); the same values, first maximum of a window wins."""
    if kind == "none":
        return x_BHWC
    pads = ((0, 0), caffe_pool_padding(x_BHWC.shape[1], window, stride), caffe_pool_padding(x_BHWC.shape[2], window, stride), (0, 0))
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    if kind == "max":
        if grad == "mask":
            return max_pool_mask_grad(x_BHWC, window, stride, pads)
        return jax.lax.reduce_window(x_BHWC, -jnp.inf, jax.lax.max, dims, strides, pads)
    summed = jax.lax.reduce_window(x_BHWC, 0.0, jax.lax.add, dims, strides, pads)
    ones = jnp.ones((1, *x_BHWC.shape[1:3], 1), x_BHWC.dtype)
    counts = jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, strides, pads)
    return summed / counts


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool_mask_grad(x_BHWC: jax.Array, window: int, stride: int, pads: tuple) -> jax.Array:
    """Max pooling (``pads`` as for reduce_window) whose gradient is built from one mask per window
    offset and strided (interior-padded) adds: no scatter. Each output's gradient goes to the first
    maximum of its window in row-major order, as XLA's select_and_scatter (``ge``) picks it."""
    return jax.lax.reduce_window(x_BHWC, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), pads)


def _max_pool_fwd(x_BHWC, window, stride, pads):
    y_BHWC = max_pool_mask_grad(x_BHWC, window, stride, pads)
    return y_BHWC, (x_BHWC, y_BHWC)


def _max_pool_bwd(window, stride, pads, residuals, g_BHWC):
    x_BHWC, y_BHWC = residuals
    xp = jnp.pad(x_BHWC, pads, constant_values=-jnp.inf)
    b, ho, wo, c = y_BHWC.shape
    hp, wp = xp.shape[1:3]
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    taken = jnp.zeros(y_BHWC.shape, bool)
    dxp = jnp.zeros(xp.shape, g_BHWC.dtype)
    zero = jnp.zeros((), g_BHWC.dtype)
    for di in range(window):
        for dj in range(window):
            patch = jax.lax.slice(xp, (0, di, dj, 0), (b, di + span_h, dj + span_w, c), (1, stride, stride, 1))
            hit = (patch == y_BHWC) & ~taken  # the first maximum of each window only
            taken = taken | hit
            spread = ((0, 0, 0), (di, hp - di - span_h, stride - 1), (dj, wp - dj - span_w, stride - 1), (0, 0, 0))
            dxp = dxp + jax.lax.pad(jnp.where(hit, g_BHWC, zero), zero, spread)
    (h0, _), (w0, _) = pads[1], pads[2]
    return (dxp[:, h0 : h0 + x_BHWC.shape[1], w0 : w0 + x_BHWC.shape[2], :],)


max_pool_mask_grad.defvjp(_max_pool_fwd, _max_pool_bwd)


class Dropout(nnx.Module):
    """Dropout in either form of ``DROPOUT_FORMS``. Both draw the same mask from the ``dropout`` RNG
    stream as ``nnx.Dropout`` (a unit is kept with probability 1 - p), so for one key the two
    forms' training outputs differ exactly by the factor 1 / (1 - p), and "inverted" equals
    ``nnx.Dropout`` bit for bit.

    The author's form (mavenlin/cuda-convnet ``PluginsSrc/include/extralayers.cuh``,
    ``DropoutNeuron``): training zeroes a unit with probability p and passes the survivors, and
    their gradient, unscaled; testing multiplies the input by 1 - p. Its training signal after a
    dropout layer is half the inverted form's (p = 0.5), so the class scores at init are up to 4x
    smaller after two such layers, and the gradient reaching the blocks below up to 4x smaller."""

    def __init__(self, rate: float, form: str):
        self.rate, self.form = rate, form

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        keep = 1.0 - self.rate
        if self.rate == 0.0:
            return x
        if not train:
            return x * jnp.asarray(keep, x.dtype) if self.form == "author" else x
        mask = jax.random.bernoulli(rngs["dropout"](), p=keep, shape=x.shape, out_sharding=jax.typeof(x).sharding)
        kept = x if self.form == "author" else x / keep
        return jax.lax.select(mask, kept, jnp.zeros_like(x))


def _check_dropout(form: str, rates) -> None:
    if form not in DROPOUT_FORMS:
        raise ValueError(f"unknown dropout_form {form!r}; choose one of {', '.join(DROPOUT_FORMS)}")
    for rate in rates:
        if not (isinstance(rate, (int, float)) and 0 <= rate < 1):
            raise ValueError(f"a dropout rate must be in [0, 1), got {rate!r}")


def _kernel_init(std: float | None):
    return nnx.initializers.he_normal() if std is None else nnx.initializers.normal(std)


class MLPConv(nnx.Module):
    def __init__(self, in_channels: int, spec: BlockSpec, dtype, *, rngs: nnx.Rngs, dropout_form: str, pool_grad: str = "xla"):
        stds = spec.init_std or (None, None, None)
        w0, w1, w2 = spec.widths
        pad = spec.kernel // 2  # "same" size, as every original config (pad 2 for 5x5, 1 for 3x3)
        self.conv = nnx.Conv(in_channels, w0, (spec.kernel, spec.kernel), padding=pad, kernel_init=_kernel_init(stds[0]), dtype=dtype, rngs=rngs)
        self.cccp_a = nnx.Conv(w0, w1, (1, 1), kernel_init=_kernel_init(stds[1]), dtype=dtype, rngs=rngs)
        self.cccp_b = nnx.Conv(w1, w2, (1, 1), kernel_init=_kernel_init(stds[2]), dtype=dtype, rngs=rngs)
        self.pool, self.pool_grad = spec.pool, pool_grad
        self.dropout = Dropout(spec.dropout, dropout_form)

    def __call__(self, x_BHWC: jax.Array, *, final_relu: bool, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        x_BHWC = nnx.relu(self.conv(x_BHWC))
        x_BHWC = nnx.relu(self.cccp_a(x_BHWC))
        x_BHWC = self.cccp_b(x_BHWC)
        x_BHWC = nnx.relu(x_BHWC) if final_relu else x_BHWC
        x_BHWC = caffe_pool(x_BHWC, self.pool, grad=self.pool_grad)
        return self.dropout(x_BHWC, train=train, rngs=rngs)


class NIN(nnx.Module):
    """NIN trunk + head. ``__call__`` returns logits (B, classes); ``class_maps`` returns the last
    block's output (B, H', W', maps), which for the GAP head are the class confidence maps."""

    def __init__(self, config: NINConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        blocks, channels = [], config.in_channels
        for spec in config.blocks:
            blocks.append(MLPConv(channels, spec, dtype, rngs=rngs, dropout_form=config.dropout_form, pool_grad=config.pool_grad))
            channels = spec.widths[-1]
        self.blocks = nnx.List(blocks)
        self.aux = nnx.data(None)
        if config.aux_after is not None:
            aux_in = config.blocks[config.aux_after].widths[-1]
            self.aux = nnx.data(nnx.Conv(aux_in, config.num_classes, (1, 1), kernel_init=_kernel_init(None), dtype=dtype, rngs=rngs))
        self.head_dropout = Dropout(config.head_dropout if config.head == "fc_dropout" else 0.0, config.dropout_form)
        self.dense = nnx.data(None)
        if config.head in ("fc", "fc_dropout", "gap_dense"):
            in_features = channels if config.head == "gap_dense" else channels * math.prod(final_hw(config))
            self.dense = nnx.data(nnx.Linear(in_features, config.num_classes, kernel_init=nnx.initializers.normal(config.head_init_std), rngs=rngs))

    def class_maps(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        return self._trunk(x_BHWC, train=train, rngs=rngs)[0]

    def _trunk(self, x_BHWC, *, train, rngs) -> tuple[jax.Array, jax.Array | None]:
        """The last block's maps, and the auxiliary logits (None without an auxiliary head)."""
        x_BHWC = x_BHWC.astype(self.config.dtype)
        last, aux_BK = len(self.blocks) - 1, None
        for i, block in enumerate(self.blocks):
            x_BHWC = block(x_BHWC, final_relu=self.config.final_relu or i != last, train=train, rngs=rngs)
            if self.aux is not None and i == self.config.aux_after:
                aux_BK = self.aux(x_BHWC).mean(axis=(1, 2)).astype(jnp.float32)
        return x_BHWC, aux_BK

    def with_aux(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> tuple[jax.Array, jax.Array | None]:
        """(logits, auxiliary logits or None): what training needs; ``__call__`` is inference."""
        maps_BHWK, aux_BK = self._trunk(x_BHWC, train=train, rngs=rngs)
        return self._head(maps_BHWK, train=train, rngs=rngs), aux_BK

    def __call__(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        return self._head(self.class_maps(x_BHWC, train=train, rngs=rngs), train=train, rngs=rngs)

    def _head(self, maps_BHWK: jax.Array, *, train: bool, rngs) -> jax.Array:
        head = self.config.head
        if head == "gap":
            logits_BK = maps_BHWK.mean(axis=(1, 2))
        elif head == "gap_dense":
            logits_BK = self.dense(maps_BHWK.mean(axis=(1, 2)))
        else:
            flat_BF = maps_BHWK.reshape(maps_BHWK.shape[0], -1)
            if head == "fc_dropout":
                flat_BF = self.head_dropout(flat_BF, train=train, rngs=rngs)
            logits_BK = self.dense(flat_BF)
        return logits_BK.astype(jnp.float32)

    def classifier_path(self) -> tuple[str, ...]:
        """Path (in the parameter tree) of the layer that produces the class scores: its learning
        rate is scaled (0.1x for cccp6 in the paper)."""
        if self.dense is not None:
            return ("dense",)
        return ("blocks", len(self.blocks) - 1, "cccp_b")


def final_hw(config: NINConfig) -> tuple[int, int]:
    """Spatial size of the class maps for the configured input size."""
    h, w = config.input_hw
    for spec in config.blocks:
        if spec.pool != "none":
            h = math.ceil((h - 3) / 2) + 1
            w = math.ceil((w - 3) / 2) + 1
    return h, w


def count_params(model: nnx.Module) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


# --------------------------------------------------------------------------- locally connected layer


class LocallyConnected2D(nnx.Module):
    """2-D layer with unshared weights (cuda-convnet's ``local`` layer, linen's ``ConvLocal``; flax.nnx
    0.12 has none): every output position has its own k x k x C_in x C_out kernel and its own bias.

    Built for one input size (``input_hw``). Kernel (out_h, out_w, k, k, C_in, C_out), bias
    (out_h, out_w, C_out). Patches are gathered by slicing (exact in any precision), then one einsum."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        input_hw: tuple[int, int],
        *,
        padding: int = 0,
        stride: int = 1,
        kernel_init=None,
        bias_init=nnx.initializers.zeros,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        h, w = input_hw
        k = kernel_size
        self.out_hw = ((h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1)
        if min(self.out_hw) < 1:
            raise ValueError(f"locally connected layer: a {k}x{k} kernel does not fit a {h}x{w} input with padding {padding}")
        self.input_hw, self.kernel_size, self.padding, self.stride, self.dtype = (h, w), k, padding, stride, dtype
        # He-normal over one position's fan-in (k*k*C_in): the position axes are batch axes.
        kernel_init = kernel_init or nnx.initializers.he_normal(in_axis=-2, out_axis=-1, batch_axis=(0, 1))
        oh, ow = self.out_hw
        self.kernel = nnx.Param(kernel_init(rngs.params(), (oh, ow, k, k, in_features, out_features), jnp.float32))
        self.bias = nnx.Param(bias_init(rngs.params(), (oh, ow, out_features), jnp.float32))

    def patches(self, x_BHWC: jax.Array) -> jax.Array:
        """(B, out_h, out_w, k, k, C): the input window under each output position."""
        if tuple(x_BHWC.shape[1:3]) != self.input_hw:
            raise ValueError(f"locally connected layer built for {self.input_hw[0]}x{self.input_hw[1]} inputs, got {x_BHWC.shape[1]}x{x_BHWC.shape[2]}")
        p, s, k = self.padding, self.stride, self.kernel_size
        oh, ow = self.out_hw
        x = jnp.pad(x_BHWC, ((0, 0), (p, p), (p, p), (0, 0)))
        rows = [jnp.stack([x[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s, :] for j in range(k)], axis=3) for i in range(k)]
        return jnp.stack(rows, axis=3)

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        dtype = self.dtype or x_BHWC.dtype
        patches = self.patches(x_BHWC.astype(dtype))
        y = jnp.einsum("bhwijc,hwijco->bhwo", patches, self.kernel[...].astype(dtype))
        return y + self.bias[...].astype(dtype)


# --------------------------------------------------------------------------- Sec. 4.6 conventional CNN

CONVNET_HEADS: tuple[str, ...] = ("fc", "fc_dropout", "gap")


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One conv layer (k x k, "same" padding, ReLU) and an optional 3x3/2 Caffe-aligned pool."""

    kernel: int
    features: int
    pool: Pool = "max"


@dataclasses.dataclass(frozen=True)
class ConvNetConfig:
    """The paper's Sec. 4.6 conventional CNN: conv layers, then one locally connected layer whose maps
    go to an FC layer (optionally after dropout) or, with ``head="gap"``, one map per class averaged
    (GAP). The sizes are ours (docs/paper-notes.md, "Paper tables" (Section 4.6), §8); they are written in ``experiments/ablate_gap.py`` (``cnn``)."""

    convs: tuple[ConvSpec, ...]
    dropout_form: str  # one of DROPOUT_FORMS (the FC + dropout head's)
    local_kernel: int = 3
    local_features: int = 16  # must equal num_classes for head="gap"
    in_channels: int = 3
    input_hw: tuple[int, int] = (32, 32)  # the local layer and the FC head are built for it
    num_classes: int = 10
    head: str = "fc"
    head_dropout: float = 0.5  # only for head="fc_dropout"
    final_relu: bool = True  # ReLU after the locally connected layer (cuda-convnet local layers use one)
    init_std: float | None = None  # N(0, std) for conv and local kernels; None = He-normal
    head_init_std: float = 0.01  # the FC layer
    dtype: str = "float32"

    def __post_init__(self):
        if self.head not in CONVNET_HEADS:
            raise ValueError(f"unknown head {self.head!r} for the conventional CNN; choose one of {', '.join(CONVNET_HEADS)}")
        if self.head == "gap" and self.local_features != self.num_classes:
            raise ValueError(f"with a GAP head the locally connected layer must output one map per class ({self.num_classes}), not {self.local_features}")
        if not self.convs:
            raise ValueError("the conventional CNN needs at least one conv layer")
        _check_dropout(self.dropout_form, [self.head_dropout])

    def hidden_widths(self) -> tuple[int, ...]:
        """The hidden widths, whose narrowest decides the --smoke width factor: the conv layers'
        (the locally connected layer's 16 or 10 maps are the paper's numbers)."""
        return tuple(c.features for c in self.convs)

    def scaled(self, width_factor: float) -> "ConvNetConfig":
        """Same network with every hidden width multiplied by width_factor (class maps keep their number)."""
        convs = tuple(dataclasses.replace(c, features=max(1, round(c.features * width_factor))) for c in self.convs)
        local = self.local_features if self.head == "gap" else max(1, round(self.local_features * width_factor))
        return dataclasses.replace(self, convs=convs, local_features=local)

    def with_he_init(self, final_relu: bool = False) -> "ConvNetConfig":
        return dataclasses.replace(self, init_std=None, final_relu=final_relu)

    def forward_macs(self, hw: tuple[int, int] | None = None) -> int:
        """Multiply-accumulates of one forward pass on one image (padded positions counted), for
        ``bench``; only the training size ``input_hw`` is valid (the local layer is built for it)."""
        h, w = hw or self.input_hw
        if (h, w) != tuple(self.input_hw):
            raise ValueError(f"the conventional CNN is built for {self.input_hw[0]}x{self.input_hw[1]} inputs")
        cin, macs = self.in_channels, 0
        for c in self.convs:
            macs += h * w * c.kernel * c.kernel * cin * c.features
            cin = c.features
            if c.pool != "none":
                h, w = math.ceil((h - 3) / 2) + 1, math.ceil((w - 3) / 2) + 1
        macs += h * w * self.local_kernel * self.local_kernel * cin * self.local_features
        if self.head != "gap":
            macs += h * w * self.local_features * self.num_classes
        return macs

    def activation_elements(self) -> int:
        """Values per image of the input and of every conv, pool and locally connected output."""
        h, w = self.input_hw
        total = h * w * self.in_channels
        for c in self.convs:
            total += h * w * c.features
            if c.pool != "none":
                h, w = math.ceil((h - 3) / 2) + 1, math.ceil((w - 3) / 2) + 1
                total += h * w * c.features
        return total + h * w * self.local_features

    def local_input_hw(self) -> tuple[int, int]:
        """Spatial size entering the locally connected layer (= its output size, "same" padding)."""
        h, w = self.input_hw
        for c in self.convs:
            if c.pool != "none":
                h, w = math.ceil((h - 3) / 2) + 1, math.ceil((w - 3) / 2) + 1
        return h, w


class ConvNet(nnx.Module):
    """Conventional CNN with a locally connected top layer (paper Sec. 4.6). Same interface as NIN:
    ``__call__(x, *, train, rngs)`` -> logits, ``class_maps``, ``classifier_path``."""

    def __init__(self, config: ConvNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        init = _kernel_init(config.init_std)
        convs, channels = [], config.in_channels
        for spec in config.convs:
            convs.append(nnx.Conv(channels, spec.features, (spec.kernel, spec.kernel), padding=spec.kernel // 2, kernel_init=init, dtype=dtype, rngs=rngs))
            channels = spec.features
        self.convs = nnx.List(convs)
        hw = config.local_input_hw()
        local_init = None if config.init_std is None else nnx.initializers.normal(config.init_std)
        self.local = LocallyConnected2D(channels, config.local_features, config.local_kernel, hw, padding=config.local_kernel // 2, kernel_init=local_init, dtype=dtype, rngs=rngs)
        self.head_dropout = Dropout(config.head_dropout if config.head == "fc_dropout" else 0.0, config.dropout_form)
        self.dense = nnx.data(None)
        if config.head in ("fc", "fc_dropout"):
            in_features = config.local_features * math.prod(self.local.out_hw)
            self.dense = nnx.data(nnx.Linear(in_features, config.num_classes, kernel_init=nnx.initializers.normal(config.head_init_std), rngs=rngs))

    def class_maps(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        """The locally connected layer's output (B, H', W', maps); the class maps for head="gap"."""
        x_BHWC = x_BHWC.astype(self.config.dtype)
        for spec, conv in zip(self.config.convs, self.convs):
            x_BHWC = caffe_pool(nnx.relu(conv(x_BHWC)), spec.pool)
        x_BHWC = self.local(x_BHWC)
        return nnx.relu(x_BHWC) if self.config.final_relu else x_BHWC

    def __call__(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        maps_BHWK = self.class_maps(x_BHWC, train=train, rngs=rngs)
        if self.config.head == "gap":
            logits_BK = maps_BHWK.mean(axis=(1, 2))
        else:
            flat_BF = maps_BHWK.reshape(maps_BHWK.shape[0], -1)
            if self.config.head == "fc_dropout":
                flat_BF = self.head_dropout(flat_BF, train=train, rngs=rngs)
            logits_BK = self.dense(flat_BF)
        return logits_BK.astype(jnp.float32)

    def classifier_path(self) -> tuple[str, ...]:
        """The layer producing the class scores: the FC layer, or the local layer for head="gap"."""
        return ("dense",) if self.dense is not None else ("local",)


# --------------------------------------------------------------------------- one entry point for every network

ModelConfig = NINConfig | ConvNetConfig


def build_model(config: ModelConfig, *, rngs: nnx.Rngs) -> NIN | ConvNet:
    """The network a config describes: ``NIN`` for a ``NINConfig``, ``ConvNet`` for a ``ConvNetConfig``."""
    if isinstance(config, NINConfig):
        return NIN(config, rngs=rngs)
    if isinstance(config, ConvNetConfig):
        return ConvNet(config, rngs=rngs)
    raise TypeError(f"no network for a {type(config).__name__}")


def config_from_dict(d: dict) -> ModelConfig:
    """Inverse of ``dataclasses.asdict`` for either config (JSON lists back to tuples), e.g. from run.json."""
    d = dict(d)
    # Records written before dropout_form existed were trained with inverted dropout.
    d.setdefault("dropout_form", "inverted")
    if "input_hw" in d:
        d["input_hw"] = tuple(d["input_hw"])
    if "blocks" in d:
        d["blocks"] = tuple(BlockSpec(**{**b, "widths": tuple(b["widths"]), "init_std": tuple(b["init_std"]) if b.get("init_std") else None}) for b in d["blocks"])
        return NINConfig(**d)
    if "convs" in d:
        d["convs"] = tuple(ConvSpec(**c) for c in d["convs"])
        return ConvNetConfig(**d)
    raise ValueError(f"not a model config: fields {sorted(d)}")
