"""The baselines of the NIN tables in the same harness: conv. maxout + dropout (Goodfellow et al.,
ICML 2013, as the authors' pylearn2 code does it) and stochastic pooling (Zeiler & Fergus, ICLR 2013,
from the paper's text).

Maxout (``MaxoutConfig`` / ``MaxoutNet``), with the semantics of lisa-lab/pylearn2:
* ``MaxoutConvC01B`` (``pylearn2/models/maxout.py``): ``num_channels x num_pieces`` linear maps
  (a k x k conv, zero padding ``pad``, stride 1: output n + 2 pad - k + 1, ``linear/conv2d_c01b.py``
  ``setup_detector_layer_c01b``), bias tied (one per map) or untied (one per map and position),
  the max over each unit's ``num_pieces`` consecutive maps (``z[i::num_pieces]``), then max pooling
  with cuda-convnet's geometry: ceil((n - shape) / stride) + 1 windows from index 0, the last one
  clipped at the border (``sandbox/cuda_convnet/pool.py``, ``_outputsX``);
* ``Maxout`` (dense): ``num_units x num_pieces`` linear units, the max over consecutive groups;
* ``Softmax`` (``models/mlp.py``);
* weights U(-irange, irange), biases 0;
* ``max_kernel_norm`` / ``max_col_norm`` (``model_extensions/norm_constraint.py``,
  ``ConstrainFilterL2Norm``): after every update each unit's incoming weights (one piece's kernel,
  one column) are scaled by min(norm, limit) / max(1e-7, norm): ``max_norm_projection``;
* dropout (``costs/mlp/dropout.py`` -> ``MLP.dropout_fprop`` / ``apply_dropout``): each layer's
  *input* is kept element-wise with its ``include_prob`` and multiplied by its ``scale``
  (the image: p 0.8, scale 1; later layers: p 0.5, scale 2); evaluation uses no mask.

The optimizer (``pylearn2_optimizer``): ``learning_rule.Momentum``, v <- m v - lr * lr_scale * g,
w <- w + v, then the projection; per-layer ``W_lr_scale`` / ``b_lr_scale``; momentum from
``MomentumAdjustor`` and the LR from ``LinearDecayOverEpoch`` or ``ExponentialDecay``
(``momentum_adjustor``, ``linear_decay_over_epoch``, ``exponential_decay``: the pylearn2 formulas,
with pylearn2's epoch count, see ``pylearn2_count``).

Stochastic pooling (``StochasticPoolConfig`` / ``StochasticPoolNet``): conv + ReLU, 3x3/2 pooling
that samples one activation per window with probability proportional to its value (training) or
takes the probability-weighted average (evaluation), local response normalization across maps,
then a fully connected softmax layer. No code was released. The sampling and the weighted average
are those of pylearn2's ``expr/stochastic_pool.py`` (a third-party implementation of the paper;
windows from index 0, ceil((n - 3) / 2) + 1 of them, zero-padded at the far edge, an all-zero window
gives 0). The network and training facts come from a secondary note [S]: the paper's sections 3-4
could not be read here (docs/paper-notes.md, "Baselines"); the rest is ours, listed in the
experiment file.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nin_repro.models import POOL_GRADS, _kernel_init, caffe_pool, caffe_pool_padding

# --------------------------------------------------------------------------- geometry


def conv_out(size: int, kernel: int, pad: int) -> int:
    """Detector size of a stride-1 conv with zero padding ``pad`` (setup_detector_layer_c01b)."""
    return size + 2 * pad - kernel + 1


def pool_out(size: int, shape: int, stride: int) -> int:
    """cuda-convnet's pooled size: windows from index 0, the last may hang over the edge."""
    return math.ceil((size - shape) / stride) + 1


def conv_padded(x_BHWC: jax.Array, w_HWIO: jax.Array, pad: int) -> jax.Array:
    """A stride-1 conv with zero padding ``pad`` on every side. On a CPU the padding beyond
    (k - 1) // 2 is added by ``jnp.pad`` first: XLA:CPU's weight gradient falls off a cliff when a
    conv's own padding exceeds (k - 1) // 2 (batch 128, 2 cores: the SVHN net's 18x18x64 -> 256 maps,
    5x5, pad 3: 25.0 s against 0.28 s split as 1 + 2; the CIFAR-10 net's 32x32x3 -> 192, 8x8, pad 4:
    4.8 s against 0.24 s). The same values either way; other backends keep the conv's own padding."""
    inner = min(pad, (w_HWIO.shape[0] - 1) // 2) if jax.default_backend() == "cpu" else pad
    if pad > inner:
        outer = (pad - inner, pad - inner)
        x_BHWC = jnp.pad(x_BHWC, ((0, 0), outer, outer, (0, 0)))
    return jax.lax.conv_general_dilated(x_BHWC, w_HWIO, (1, 1), ((inner, inner), (inner, inner)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def max_over_pieces(z_BxU: jax.Array, num_pieces: int) -> jax.Array:
    """(..., units * pieces) -> (..., units): unit u is the max of channels u*pieces .. u*pieces + pieces - 1."""
    return z_BxU.reshape(*z_BxU.shape[:-1], z_BxU.shape[-1] // num_pieces, num_pieces).max(axis=-1)


def pylearn2_dropout(x: jax.Array, include_prob: float, scale: float, key: jax.Array | None) -> jax.Array:
    """``MLP.apply_dropout``: every element kept with ``include_prob`` and multiplied by ``scale``;
    include_prob 1 (or no key: evaluation) returns the input unchanged."""
    if include_prob >= 1.0 or key is None:
        return x
    keep = jax.random.bernoulli(key, include_prob, x.shape)
    return jnp.where(keep, x * jnp.asarray(scale, x.dtype), jnp.zeros((), x.dtype))


def _uniform(irange: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -irange, irange)

    return init


# --------------------------------------------------------------------------- maxout


@dataclasses.dataclass(frozen=True)
class MaxoutConvSpec:
    """One ``MaxoutConvC01B`` layer, with the dropout applied to its input."""

    num_channels: int
    num_pieces: int
    kernel: int
    pad: int
    pool_shape: int
    pool_stride: int
    irange: float
    max_kernel_norm: float | None
    tied_b: bool
    W_lr_scale: float = 1.0
    b_lr_scale: float = 1.0
    include_prob: float = 0.5  # Dropout's default_input_include_prob
    input_scale: float = 2.0  # Dropout's default_input_scale


@dataclasses.dataclass(frozen=True)
class MaxoutDenseSpec:
    """One dense ``Maxout`` layer, with the dropout applied to its input."""

    num_units: int
    num_pieces: int
    irange: float
    max_col_norm: float | None
    W_lr_scale: float = 1.0
    b_lr_scale: float = 1.0
    include_prob: float = 0.5
    input_scale: float = 2.0


@dataclasses.dataclass(frozen=True)
class MaxoutConfig:
    """A pylearn2 maxout MLP: conv maxout layers, dense maxout layers, a softmax layer."""

    maxout_convs: tuple[MaxoutConvSpec, ...]
    maxout_dense: tuple[MaxoutDenseSpec, ...]
    softmax_irange: float
    softmax_max_col_norm: float | None
    softmax_include_prob: float = 0.5
    softmax_input_scale: float = 2.0
    in_channels: int = 3
    input_hw: tuple[int, int] = (32, 32)
    num_classes: int = 10
    dtype: str = "float32"
    pool_grad: str = "auto"  # the max pools' gradient, as NINConfig.pool_grad (a speed option [ours])

    def __post_init__(self):
        if self.pool_grad not in POOL_GRADS:
            raise ValueError(f"unknown pool_grad {self.pool_grad!r}; choose one of {', '.join(POOL_GRADS)}")
        for p in [c.include_prob for c in self.maxout_convs] + [d.include_prob for d in self.maxout_dense] + [self.softmax_include_prob]:
            if not 0 < p <= 1:
                raise ValueError(f"an include probability must be in (0, 1], got {p!r}")
        for shape in self.conv_shapes():
            if min(shape) < 1:
                raise ValueError(f"a maxout conv layer's output would be empty for a {self.input_hw[0]}x{self.input_hw[1]} input")

    def conv_shapes(self) -> list[tuple[int, int]]:
        """(detector size, pooled size) of each conv layer, square inputs."""
        size, out = self.input_hw[0], []
        for c in self.maxout_convs:
            det = conv_out(size, c.kernel, c.pad)
            size = pool_out(det, c.pool_shape, c.pool_stride) if det >= c.pool_shape else 0
            out.append((det, size))
        return out

    def flat_features(self) -> int:
        """Inputs of the first dense (or softmax) layer: the last conv layer's pooled maps."""
        if not self.maxout_convs:
            return self.input_hw[0] * self.input_hw[1] * self.in_channels
        return self.conv_shapes()[-1][1] ** 2 * self.maxout_convs[-1].num_channels

    def param_count(self) -> int:
        """Parameters as pylearn2 allocates them (tied bias: one per detector map; untied: per position)."""
        total, cin = 0, self.in_channels
        for c, (det, _) in zip(self.maxout_convs, self.conv_shapes()):
            maps = c.num_channels * c.num_pieces
            total += c.kernel * c.kernel * cin * maps + (maps if c.tied_b else maps * det * det)
            cin = c.num_channels
        fan_in = self.flat_features()
        for d in self.maxout_dense:
            total += (fan_in + 1) * d.num_units * d.num_pieces
            fan_in = d.num_units
        return total + (fan_in + 1) * self.num_classes

    def hidden_widths(self) -> tuple[int, ...]:
        return tuple(c.num_channels for c in self.maxout_convs) + tuple(d.num_units for d in self.maxout_dense)

    def scaled(self, width_factor: float) -> "MaxoutConfig":
        """Every unit count times width_factor (the pieces and the classes keep their number)."""
        convs = tuple(dataclasses.replace(c, num_channels=max(1, round(c.num_channels * width_factor))) for c in self.maxout_convs)
        dense = tuple(dataclasses.replace(d, num_units=max(1, round(d.num_units * width_factor))) for d in self.maxout_dense)
        return dataclasses.replace(self, maxout_convs=convs, maxout_dense=dense)

    def with_he_init(self, final_relu: bool = False) -> "MaxoutConfig":
        """--smoke asks every network for He init; maxout keeps U(-irange, irange) (no ReLU to change)."""
        return self

    def forward_macs(self, hw: tuple[int, int] | None = None) -> int:
        if hw is not None and tuple(hw) != tuple(self.input_hw):
            raise ValueError(f"the maxout net is built for {self.input_hw[0]}x{self.input_hw[1]} inputs")
        macs, cin = 0, self.in_channels
        for c, (det, _) in zip(self.maxout_convs, self.conv_shapes()):
            macs += det * det * c.kernel * c.kernel * cin * c.num_channels * c.num_pieces
            cin = c.num_channels
        fan_in = self.flat_features()
        for d in self.maxout_dense:
            macs += fan_in * d.num_units * d.num_pieces
            fan_in = d.num_units
        return macs + fan_in * self.num_classes

    def activation_elements(self) -> int:
        total = self.input_hw[0] * self.input_hw[1] * self.in_channels
        for c, (det, pooled) in zip(self.maxout_convs, self.conv_shapes()):
            total += det * det * c.num_channels * (c.num_pieces + 1) + pooled * pooled * c.num_channels
        return total + sum(d.num_units * (d.num_pieces + 1) for d in self.maxout_dense)


class MaxoutConv(nnx.Module):
    def __init__(self, in_channels: int, spec: MaxoutConvSpec, detector_hw: int, dtype, *, rngs: nnx.Rngs, pool_grad: str = "auto"):
        maps = spec.num_channels * spec.num_pieces
        self.spec, self.dtype, self.pool_grad = spec, dtype, pool_grad
        self.kernel = nnx.Param(_uniform(spec.irange)(rngs.params(), (spec.kernel, spec.kernel, in_channels, maps)))
        self.bias = nnx.Param(jnp.zeros((maps,) if spec.tied_b else (detector_hw, detector_hw, maps), jnp.float32))

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        s = self.spec
        z_BHWM = conv_padded(x_BHWC.astype(self.dtype), self.kernel[...].astype(self.dtype), s.pad) + self.bias[...].astype(self.dtype)
        # cuda-convnet's pooling geometry is Caffe's: windows from index 0, the last one clipped.
        return caffe_pool(max_over_pieces(z_BHWM, s.num_pieces), "max", s.pool_shape, s.pool_stride, grad=self.pool_grad)


class MaxoutDense(nnx.Module):
    def __init__(self, in_features: int, spec: MaxoutDenseSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        self.kernel = nnx.Param(_uniform(spec.irange)(rngs.params(), (in_features, spec.num_units * spec.num_pieces)))
        self.bias = nnx.Param(jnp.zeros((spec.num_units * spec.num_pieces,), jnp.float32))

    def __call__(self, x_BF: jax.Array) -> jax.Array:
        return max_over_pieces(x_BF @ self.kernel[...].astype(x_BF.dtype) + self.bias[...].astype(x_BF.dtype), self.spec.num_pieces)


class Softmax(nnx.Module):
    """pylearn2's ``Softmax`` layer: logits = x W + b (the loss applies the softmax)."""

    def __init__(self, in_features: int, num_classes: int, irange: float, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_uniform(irange)(rngs.params(), (in_features, num_classes)))
        self.bias = nnx.Param(jnp.zeros((num_classes,), jnp.float32))

    def __call__(self, x_BF: jax.Array) -> jax.Array:
        return x_BF @ self.kernel[...].astype(x_BF.dtype) + self.bias[...].astype(x_BF.dtype)


class MaxoutNet(nnx.Module):
    """A pylearn2 maxout MLP with dropout on every layer's input. Same interface as NIN:
    ``__call__(x, *, train, rngs)`` -> logits, ``classifier_path``."""

    def __init__(self, config: MaxoutConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        convs, cin = [], config.in_channels
        for spec, (det, _) in zip(config.maxout_convs, config.conv_shapes()):
            convs.append(MaxoutConv(cin, spec, det, dtype, rngs=rngs, pool_grad=config.pool_grad))
            cin = spec.num_channels
        self.maxout_convs = nnx.List(convs)
        dense, fan_in = [], config.flat_features()
        for spec in config.maxout_dense:
            dense.append(MaxoutDense(fan_in, spec, rngs=rngs))
            fan_in = spec.num_units
        self.maxout_dense = nnx.List(dense)
        self.softmax = Softmax(fan_in, config.num_classes, config.softmax_irange, rngs=rngs)

    def __call__(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        def drop(x, p, scale):
            return pylearn2_dropout(x, p, scale, rngs.dropout() if train and rngs is not None and p < 1 else None)

        x = x_BHWC.astype(self.config.dtype)
        for layer in self.maxout_convs:
            x = layer(drop(x, layer.spec.include_prob, layer.spec.input_scale))
        x = x.reshape(x.shape[0], -1)
        for layer in self.maxout_dense:
            x = layer(drop(x, layer.spec.include_prob, layer.spec.input_scale))
        c = self.config
        return self.softmax(drop(x, c.softmax_include_prob, c.softmax_input_scale)).astype(jnp.float32)

    def classifier_path(self) -> tuple[str, ...]:
        return ("softmax",)


def layer_rules(config: MaxoutConfig) -> dict[tuple, tuple[float, float, float | None]]:
    """(W_lr_scale, b_lr_scale, max norm of a unit's incoming weights) of every layer, by its path."""
    rules: dict[tuple, tuple[float, float, float | None]] = {}
    for i, c in enumerate(config.maxout_convs):
        rules[("maxout_convs", i)] = (c.W_lr_scale, c.b_lr_scale, c.max_kernel_norm)
    for i, d in enumerate(config.maxout_dense):
        rules[("maxout_dense", i)] = (d.W_lr_scale, d.b_lr_scale, d.max_col_norm)
    rules[("softmax",)] = (1.0, 1.0, config.softmax_max_col_norm)
    return rules


# --------------------------------------------------------------------------- max-norm and the optimizer


def max_norm_projection(w: jax.Array, limit: float) -> jax.Array:
    """``ConstrainFilterL2Norm``: each output unit's incoming weights (every axis but the last: a conv
    piece's k x k x C_in kernel, a dense column) scaled by min(norm, limit) / max(1e-7, norm)."""
    norms = jnp.sqrt(jnp.sum(jnp.square(w), axis=tuple(range(w.ndim - 1)), keepdims=True))
    return w * (jnp.clip(norms, 0.0, limit) / jnp.maximum(1e-7, norms))


def _names(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


def _rule_of(rules: dict, path):
    """(the layer's rule, "kernel" or "bias") of a parameter path (nnx may append a key after the name)."""
    names = _names(path)
    for key, rule in rules.items():
        if names[: len(key)] == key:
            return rule, "kernel" if "kernel" in names else "bias"
    raise ValueError(f"no maxout layer rule for parameter {'/'.join(map(str, names))}")


def project_max_norm(limits) -> optax.GradientTransformation:
    """An optax transform placed last: turns the update u into proj(w + u) - w, so the parameters
    after ``apply_updates`` are the projected ones (the momentum keeps the unprojected step, as in
    pylearn2, whose velocity is not touched by ``_modify_updates``). ``limits``: a tree of
    float | None like the parameters (None: no constraint)."""

    def update(updates, state, params):
        def one(u, w, limit):
            return u if limit is None else max_norm_projection(w + u, limit) - w

        return jax.tree.map(one, updates, params, limits, is_leaf=lambda x: x is None), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def pylearn2_optimizer(model_config: MaxoutConfig, params) -> optax.GradientTransformation:
    """pylearn2's SGD with ``Momentum``: v <- m v - lr * lr_scale * g; w <- w + v; then max-norm.
    Hyperparameters ``learning_rate``, ``bias_learning_rate`` (the same schedule) and ``momentum``
    are injected, so the compiled step sets them every step (``MomentumAdjustor`` changes m)."""
    rules = layer_rules(model_config)
    scales = jax.tree_util.tree_map_with_path(lambda p, _: jnp.float32(_rule_of(rules, p)[0][0 if _rule_of(rules, p)[1] == "kernel" else 1]), params)
    biases = jax.tree_util.tree_map_with_path(lambda p, _: _rule_of(rules, p)[1] != "kernel", params)
    limits = jax.tree_util.tree_map_with_path(lambda p, _: _rule_of(rules, p)[0][2] if _rule_of(rules, p)[1] == "kernel" else None, params)

    def build(learning_rate, bias_learning_rate, momentum):
        def scale(updates, _):
            return jax.tree.map(lambda g, s, b: -g * s * (bias_learning_rate if b else learning_rate), updates, scales, biases)

        return optax.chain(optax.stateless(scale), optax.trace(decay=momentum), project_max_norm(limits))

    return optax.inject_hyperparams(build)(learning_rate=1.0, bias_learning_rate=1.0, momentum=0.0)


# --------------------------------------------------------------------------- pylearn2's schedules


def pylearn2_count(epoch: int):
    """The count pylearn2's epoch-based extensions have while epoch ``epoch`` (0-based) trains:
    ``Train.main_loop`` calls ``setup`` (count = epochs seen = 0) and then ``on_monitor`` once
    before the first epoch and once after each, and ``on_monitor`` adds 1 first."""
    return epoch + 1


def momentum_adjustor(count, init: float, final: float, start: int, saturate: int):
    """``MomentumAdjustor.current_momentum``: linear from init (count <= start) to final (count >= saturate)."""
    if saturate == start:
        return jnp.where(count >= start, final, init) if isinstance(count, jax.Array) else (final if count >= start else init)
    alpha = (count - start) / (saturate - start)
    alpha = jnp.clip(alpha, 0.0, 1.0) if isinstance(alpha, jax.Array) else min(max(alpha, 0.0), 1.0)
    return init * (1 - alpha) + alpha * final


def linear_decay_over_epoch(count, start: int, saturate: int, decay_factor: float):
    """``LinearDecayOverEpoch.current_lr`` as a factor of the initial LR:
    1 before ``start``; 1 - (1 - decay) (count - start + 1) / (saturate - start + 1) until ``saturate``; decay after."""
    step = (1.0 - decay_factor) / (saturate - start + 1)
    ramp = 1.0 - step * (count - start + 1)
    if isinstance(count, jax.Array):
        return jnp.where(count < start, 1.0, jnp.where(count < saturate, ramp, decay_factor))
    return 1.0 if count < start else (ramp if count < saturate else decay_factor)


def exponential_decay(t, decay_factor: float, min_lr: float, base_lr: float):
    """``ExponentialDecay`` as a factor of the initial LR: step t (0-based) trains with
    base_lr / decay_factor ** t, never below min_lr (the callback runs after each minibatch)."""
    if isinstance(t, jax.Array):
        return jnp.maximum(jnp.exp(-t * math.log(decay_factor)), min_lr / base_lr)
    return max(decay_factor ** (-t), min_lr / base_lr)


LR_DECAYS = ("linear_epoch", "exponential")


def lr_decay_problem(lr_decay: tuple) -> str | None:
    """What is wrong with a ``Recipe.lr_decay`` (None when it is valid)."""
    if not lr_decay or lr_decay[0] not in LR_DECAYS:
        return f"lr_decay must start with one of {', '.join(LR_DECAYS)}, got {list(lr_decay)!r}"
    if lr_decay[0] == "linear_epoch" and not (len(lr_decay) == 4 and 1 <= lr_decay[1] <= lr_decay[2] and 0 < lr_decay[3] <= 1):
        return f"lr_decay linear_epoch takes start <= saturate and a decay factor in (0, 1], got {list(lr_decay)!r}"
    if lr_decay[0] == "exponential" and not (len(lr_decay) == 3 and lr_decay[1] >= 1 and lr_decay[2] >= 0):
        return f"lr_decay exponential takes a decay factor >= 1 and a min_lr >= 0, got {list(lr_decay)!r}"
    return None


def in_phase2(step, steps_per_epoch: int, scale: float, phase1_epochs: float):
    """Whether ``step`` belongs to the second phase (it starts after ``phase1_epochs`` epochs,
    stretched like the rest of the schedule by ``scale``)."""
    return step >= phase1_epochs * scale * steps_per_epoch


def phase2_problem(phase2: tuple) -> str | None:
    """What is wrong with a ``Recipe.pylearn2_phase2`` (None when it is valid; () = no second phase)."""
    if phase2 == ():
        return None
    if not (len(phase2) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in phase2) and phase2[0] > 0 and phase2[1] > 0 and 0 <= phase2[2] < 1):
        return f"pylearn2_phase2 takes (epochs > 0, learning rate > 0, momentum in [0, 1)), got {list(phase2)!r}"
    return None


def lr_factor_at(lr_decay: tuple, step, steps_per_epoch: int, scale: float, base_lr: float, phase2: tuple = (), phase1_epochs: float = 0.0):
    """The LR factor of step ``step`` (a Python number or a device scalar); ``scale`` stretches the
    schedule when --epochs shortens or lengthens the run (epochs and steps divided by it). With a
    second phase ``(epochs, lr, momentum)`` (svhn2.yaml: a fresh SGD, no LR callback or extension)
    every step after ``phase1_epochs`` trains with ``lr`` / ``base_lr``."""
    if lr_decay[0] == "exponential":
        factor = exponential_decay(step / scale, lr_decay[1], lr_decay[2], base_lr)
    else:
        epoch = jnp.floor(step / steps_per_epoch / scale) if isinstance(step, jax.Array) else math.floor(step / steps_per_epoch / scale)
        factor = linear_decay_over_epoch(pylearn2_count(epoch), lr_decay[1], lr_decay[2], lr_decay[3])
    if not phase2:
        return factor
    second = in_phase2(step, steps_per_epoch, scale, phase1_epochs)
    return jnp.where(second, phase2[1] / base_lr, factor) if isinstance(step, jax.Array) else (phase2[1] / base_lr if second else factor)


def momentum_at(momentum_adjust: tuple, init: float, step, steps_per_epoch: int, scale: float, phase2: tuple = (), phase1_epochs: float = 0.0):
    """The momentum of step ``step`` under ``MomentumAdjustor(final, start, saturate)``; () = fixed.
    In a second phase: its momentum, except 0 on its first step. svhn2.yaml starts a new
    ``Momentum`` rule, whose velocities start at 0: v = m * 0 - lr g, which momentum 0 gives
    from any velocity (v <- 0 * v - lr g)."""
    if not momentum_adjust:
        m = init
    else:
        final, start, saturate = momentum_adjust
        epoch = jnp.floor(step / steps_per_epoch / scale) if isinstance(step, jax.Array) else math.floor(step / steps_per_epoch / scale)
        m = momentum_adjustor(pylearn2_count(epoch), init, final, start, saturate)
    if not phase2:
        return m
    second = in_phase2(step, steps_per_epoch, scale, phase1_epochs)
    before = in_phase2(step - 1, steps_per_epoch, scale, phase1_epochs)
    if isinstance(step, jax.Array):
        return jnp.where(second & ~before, 0.0, jnp.where(second, phase2[2], m))
    return 0.0 if second and not before else (phase2[2] if second else m)


# --------------------------------------------------------------------------- stochastic pooling


def _windows(x_BHWC: jax.Array, window: int, stride: int) -> jax.Array:
    """(B, H', W', C, window * window): every pooling window (Caffe / cuda-convnet geometry; cells
    past the border are 0, which stochastic pooling never picks and which adds nothing to an average)."""
    pads = ((0, 0), caffe_pool_padding(x_BHWC.shape[1], window, stride), caffe_pool_padding(x_BHWC.shape[2], window, stride), (0, 0))
    xp = jnp.pad(x_BHWC, pads)
    b, hp, wp, c = xp.shape
    ho, wo = (hp - window) // stride + 1, (wp - window) // stride + 1
    cells = [jax.lax.slice(xp, (0, i, j, 0), (b, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c), (1, stride, stride, 1)) for i in range(window) for j in range(window)]
    return jnp.stack(cells, axis=-1)


def sample_cell(cells: jax.Array, u: jax.Array) -> jax.Array:
    """Index (shape ``cells.shape[:-1] + (1,)``) of the cell that inverse-CDF sampling picks for
    uniforms ``u`` in [0, 1) (shape ``cells.shape[:-1] + (1,)``): the first cell whose running sum
    exceeds u * total, so a zero cell is never picked. Where u * total rounds up to the total (u near
    1 in float32) no running sum exceeds it; the pick is then the last positive cell, not the last
    cell (which may be 0). A window of zeros gives its last cell, whose value is 0."""
    running = jnp.cumsum(cells, axis=-1)
    total = running[..., -1:]  # the threshold's scale is the cumsum's own total, not a separate sum
    index = jnp.sum(running <= u * total, axis=-1, keepdims=True)
    n = cells.shape[-1]
    last_positive = (n - 1) - jnp.argmax(jnp.flip(cells > 0, axis=-1), axis=-1, keepdims=True)
    return jnp.where(index >= n, last_positive, index)


def stochastic_pool(x_BHWC: jax.Array, key: jax.Array | None, window: int = 3, stride: int = 2) -> jax.Array:
    """Stochastic pooling of non-negative activations. Training (``key`` given): one cell per window,
    cell i with probability a_i / sum(a); the gradient goes to that cell. Evaluation (no key):
    sum(a_i * p_i) = sum(a_i^2) / sum(a_i). A window of zeros gives 0 both ways, without NaN.
    The same arithmetic and window geometry as pylearn2's ``expr/stochastic_pool.py``
    (``stochastic_max_pool_bc01`` / ``weighted_max_pool_bc01``), which implements the paper."""
    cells = _windows(x_BHWC, window, stride)
    if key is None:
        total = cells.sum(axis=-1)
        safe = jnp.where(total > 0, total, 1.0)
        return jnp.where(total > 0, jnp.square(cells).sum(axis=-1) / safe, 0.0)
    u = jax.random.uniform(key, cells.shape[:-1] + (1,), cells.dtype)
    index = sample_cell(jax.lax.stop_gradient(cells), u)
    return jnp.take_along_axis(cells, index, axis=-1)[..., 0]


def local_response_norm(x_BHWC: jax.Array, size: int, alpha: float, beta: float, k: float) -> jax.Array:
    """Across maps: b_c = a_c / (k + alpha / size * sum of a_c'^2 over the ``size`` maps centred on c)^beta
    (maps past the first and last count as 0; cuda-convnet's ``cmrnorm`` divides alpha by size the same way)."""
    sq = jnp.square(x_BHWC)
    lo = size // 2
    summed = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1), ((0, 0), (0, 0), (0, 0), (lo, size - 1 - lo)))
    return x_BHWC / jnp.power(k + alpha / size * summed, beta)


POOLS = ("stochastic", "max", "avg")


@dataclasses.dataclass(frozen=True)
class StochasticPoolConfig:
    """Conv (k x k, "same" padding) + ReLU, 3x3/2 pooling and LRN per layer, then a softmax layer."""

    sp_features: tuple[int, ...]
    kernel: int
    pool: str  # "stochastic" (the paper's), "max" or "avg" (its baselines)
    init_std: float | None  # N(0, std) conv kernels; None = He-normal (as models.py; train.compiled_recipe sets None)
    head_init_std: float
    lrn_size: int
    lrn_alpha: float
    lrn_beta: float
    lrn_k: float
    pool_window: int = 3
    pool_stride: int = 2
    in_channels: int = 3
    input_hw: tuple[int, int] = (32, 32)
    num_classes: int = 10
    dtype: str = "float32"

    def __post_init__(self):
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; choose one of {', '.join(POOLS)}")

    def sizes(self) -> list[int]:
        size, out = self.input_hw[0], []
        for _ in self.sp_features:
            size = pool_out(size, self.pool_window, self.pool_stride)
            out.append(size)
        return out

    def param_count(self) -> int:
        total, cin = 0, self.in_channels
        for f in self.sp_features:
            total += (self.kernel * self.kernel * cin + 1) * f
            cin = f
        return total + (self.sizes()[-1] ** 2 * cin + 1) * self.num_classes

    def hidden_widths(self) -> tuple[int, ...]:
        return self.sp_features

    def scaled(self, width_factor: float) -> "StochasticPoolConfig":
        return dataclasses.replace(self, sp_features=tuple(max(1, round(f * width_factor)) for f in self.sp_features))

    def with_he_init(self, final_relu: bool = False) -> "StochasticPoolConfig":
        return self

    def forward_macs(self, hw: tuple[int, int] | None = None) -> int:
        size, cin, macs = self.input_hw[0], self.in_channels, 0
        for f, pooled in zip(self.sp_features, self.sizes()):
            macs += size * size * self.kernel * self.kernel * cin * f
            size, cin = pooled, f
        return macs + size * size * cin * self.num_classes

    def activation_elements(self) -> int:
        size, total = self.input_hw[0], self.input_hw[0] * self.input_hw[1] * self.in_channels
        for f, pooled in zip(self.sp_features, self.sizes()):
            total += size * size * f + 2 * pooled * pooled * f
            size = pooled
        return total


class StochasticPoolNet(nnx.Module):
    def __init__(self, config: StochasticPoolConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        convs, cin = [], config.in_channels
        for f in config.sp_features:
            k = config.kernel
            convs.append(nnx.Conv(cin, f, (k, k), padding=k // 2, kernel_init=_kernel_init(config.init_std), dtype=dtype, rngs=rngs))
            cin = f
        self.convs = nnx.List(convs)
        flat = config.sizes()[-1] ** 2 * cin
        self.softmax = nnx.Linear(flat, config.num_classes, kernel_init=nnx.initializers.normal(config.head_init_std), rngs=rngs)

    def __call__(self, x_BHWC: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        c = self.config
        x = x_BHWC.astype(c.dtype)
        for conv in self.convs:
            x = nnx.relu(conv(x))
            if c.pool == "stochastic":
                x = stochastic_pool(x, rngs.dropout() if train and rngs is not None else None, c.pool_window, c.pool_stride)
            elif c.pool == "max":
                x = caffe_pool(x, "max", c.pool_window, c.pool_stride)
            else:
                x = _windows(x, c.pool_window, c.pool_stride).mean(axis=-1)  # [ours] zeros past the border count
            x = local_response_norm(x, c.lrn_size, c.lrn_alpha, c.lrn_beta, c.lrn_k)
        return self.softmax(x.reshape(x.shape[0], -1)).astype(jnp.float32)

    def classifier_path(self) -> tuple[str, ...]:
        return ("softmax",)


# --------------------------------------------------------------------------- configs from JSON

BASELINE_CONFIGS = (MaxoutConfig, StochasticPoolConfig)


def config_from_dict(d: dict):
    """The baseline config a JSON dict describes (lists back to tuples), or None if it is not one."""
    d = dict(d)
    if "input_hw" in d:
        d["input_hw"] = tuple(d["input_hw"])
    if "maxout_convs" in d:
        d["maxout_convs"] = tuple(MaxoutConvSpec(**c) for c in d["maxout_convs"])
        d["maxout_dense"] = tuple(MaxoutDenseSpec(**c) for c in d["maxout_dense"])
        return MaxoutConfig(**d)
    if "sp_features" in d:
        d["sp_features"] = tuple(d["sp_features"])
        return StochasticPoolConfig(**d)
    return None


def build(config, *, rngs: nnx.Rngs):
    if isinstance(config, MaxoutConfig):
        return MaxoutNet(config, rngs=rngs)
    if isinstance(config, StochasticPoolConfig):
        return StochasticPoolNet(config, rngs=rngs)
    return None
