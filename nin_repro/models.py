"""Network In Network in Flax NNX: mlpconv blocks, Caffe ceil-mode pooling, swappable heads.

The default CIFAR-10 configuration is the paper's own (cuda-convnet ``NIN/cifar-10_def``,
nin-facts §2b): max pool after blocks 1 and 2, dropout 0.5 after them, ReLU after every conv
including the last 1x1 (cccp6), then an 8x8 global average pool. 966,986 parameters.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

Pool = Literal["max", "avg", "none"]
Head = Literal["gap", "fc", "fc_dropout", "gap_dense"]
HEADS: tuple[str, ...] = ("gap", "fc", "fc_dropout", "gap_dense")


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One mlpconv block: a k x k conv and two 1x1 convs, each followed by ReLU,
    then an optional 3x3/2 pool and dropout."""

    kernel: int
    widths: tuple[int, int, int]
    # N(0, std) init per conv; None = He-normal (our departure, used by the demo only).
    init_std: tuple[float, float, float] | None = (0.05, 0.05, 0.05)
    pool: Pool = "max"
    dropout: float = 0.5


@dataclasses.dataclass(frozen=True)
class NINConfig:
    blocks: tuple[BlockSpec, ...]
    in_channels: int = 3
    input_hw: tuple[int, int] = (32, 32)  # training size; FC heads are built for it
    num_classes: int = 10
    head: Head = "gap"
    # ReLU after the last 1x1 conv, as in every original config (nin-facts §2d). It is what makes
    # the "dead last layer" failure possible; removing it is a departure.
    final_relu: bool = True
    head_dropout: float = 0.5  # only for head="fc_dropout"
    head_init_std: float = 0.05  # the Dense layer of fc / gap_dense heads [ours]
    # Compute dtype for convs (parameters stay float32).
    dtype: str = "float32"

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.head == "gap" and self.blocks[-1].widths[-1] != self.num_classes:
            raise ValueError("with a GAP head the last 1x1 conv must output one map per class")

    def scaled(self, width_factor: float) -> "NINConfig":
        """Same network with every hidden width multiplied by width_factor (the class maps keep their number)."""
        blocks = []
        for i, b in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            widths = tuple(
                w if (last and j == 2 and self.head == "gap") else max(1, round(w * width_factor))
                for j, w in enumerate(b.widths)
            )
            blocks.append(dataclasses.replace(b, widths=widths))
        return dataclasses.replace(self, blocks=tuple(blocks))


def nin_cifar10(**overrides) -> NINConfig:
    """The paper's CIFAR-10 NIN (§2b); ``pool2="avg"`` gives the Caffe model-zoo variant (§2a)."""
    pool2 = overrides.pop("pool2", "max")
    blocks = (
        BlockSpec(5, (192, 160, 96), pool="max", dropout=0.5),
        BlockSpec(5, (192, 192, 192), pool=pool2, dropout=0.5),
        BlockSpec(3, (192, 192, overrides.get("num_classes", 10)), pool="none", dropout=0.0),
    )
    return NINConfig(blocks=blocks, **overrides)


def caffe_pool_padding(size: int, window: int = 3, stride: int = 2) -> tuple[int, int]:
    """(low, high) padding that reproduces Caffe's pooling: windows start at index 0, output
    size rounded up, so the last window may hang over the bottom/right edge."""
    out = math.ceil((size - window) / stride) + 1
    return 0, max(0, (out - 1) * stride + window - size)


def caffe_pool(x_BHWC: jax.Array, kind: Pool, window: int = 3, stride: int = 2) -> jax.Array:
    """Max or average pooling with Caffe's ceil-mode alignment. The average divides by the
    number of in-bounds cells (Caffe clips the window at the border)."""
    if kind == "none":
        return x_BHWC
    pads = ((0, 0), caffe_pool_padding(x_BHWC.shape[1], window, stride), caffe_pool_padding(x_BHWC.shape[2], window, stride), (0, 0))
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    if kind == "max":
        return jax.lax.reduce_window(x_BHWC, -jnp.inf, jax.lax.max, dims, strides, pads)
    summed = jax.lax.reduce_window(x_BHWC, 0.0, jax.lax.add, dims, strides, pads)
    ones = jnp.ones((1, *x_BHWC.shape[1:3], 1), x_BHWC.dtype)
    counts = jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, strides, pads)
    return summed / counts


def _kernel_init(std: float | None):
    return nnx.initializers.he_normal() if std is None else nnx.initializers.normal(std)


class MLPConv(nnx.Module):
    def __init__(self, in_channels: int, spec: BlockSpec, dtype, *, rngs: nnx.Rngs):
        stds = spec.init_std or (None, None, None)
        w0, w1, w2 = spec.widths
        pad = spec.kernel // 2  # "same" size, as every original config (pad 2 for 5x5, 1 for 3x3)
        self.conv = nnx.Conv(in_channels, w0, (spec.kernel, spec.kernel), padding=pad, kernel_init=_kernel_init(stds[0]), dtype=dtype, rngs=rngs)
        self.cccp_a = nnx.Conv(w0, w1, (1, 1), kernel_init=_kernel_init(stds[1]), dtype=dtype, rngs=rngs)
        self.cccp_b = nnx.Conv(w1, w2, (1, 1), kernel_init=_kernel_init(stds[2]), dtype=dtype, rngs=rngs)
        self.pool = spec.pool
        self.dropout = nnx.Dropout(spec.dropout)

    def __call__(self, x_BHWC: jax.Array, *, final_relu: bool, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        x_BHWC = nnx.relu(self.conv(x_BHWC))
        x_BHWC = nnx.relu(self.cccp_a(x_BHWC))
        x_BHWC = self.cccp_b(x_BHWC)
        x_BHWC = nnx.relu(x_BHWC) if final_relu else x_BHWC
        x_BHWC = caffe_pool(x_BHWC, self.pool)
        if self.dropout.rate > 0:
            x_BHWC = self.dropout(x_BHWC, deterministic=not train, rngs=rngs)
        return x_BHWC


class NIN(nnx.Module):
    """NIN trunk + head. ``__call__`` returns logits (B, classes); ``class_maps`` returns the last
    block's output (B, H', W', maps), which for the GAP head are the class confidence maps."""

    def __init__(self, config: NINConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        blocks, channels = [], config.in_channels
        for spec in config.blocks:
            blocks.append(MLPConv(channels, spec, dtype, rngs=rngs))
            channels = spec.widths[-1]
        self.blocks = nnx.List(blocks)
        self.head_dropout = nnx.Dropout(config.head_dropout if config.head == "fc_dropout" else 0.0)
        self.dense = nnx.data(None)
        if config.head in ("fc", "fc_dropout", "gap_dense"):
            in_features = channels if config.head == "gap_dense" else channels * math.prod(final_hw(config))
            self.dense = nnx.data(nnx.Linear(in_features, config.num_classes, kernel_init=nnx.initializers.normal(config.head_init_std), rngs=rngs))

    def class_maps(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        x_BHWC = x_BHWC.astype(self.config.dtype)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x_BHWC = block(x_BHWC, final_relu=self.config.final_relu or i != last, train=train, rngs=rngs)
        return x_BHWC

    def __call__(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        maps_BHWK = self.class_maps(x_BHWC, train=train, rngs=rngs)
        head = self.config.head
        if head == "gap":
            logits_BK = maps_BHWK.mean(axis=(1, 2))
        elif head == "gap_dense":
            logits_BK = self.dense(maps_BHWK.mean(axis=(1, 2)))
        else:
            flat_BF = maps_BHWK.reshape(maps_BHWK.shape[0], -1)
            if head == "fc_dropout":
                flat_BF = self.head_dropout(flat_BF, deterministic=not train, rngs=rngs)
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
