"""Training: SGD with the Caffe update, the dataset on the device, shuffling and augmentation
inside the compiled step, exact evaluation, dead-last-layer and non-finite-loss checks.

``train_and_evaluate(recipe, data, workdir, seed)`` runs one seed and writes its run folder:
``metrics.jsonl`` (one line per epoch), ``params/`` (orbax); ``train_and_evaluate_seeds`` trains
several seeds at once in one vmapped program and writes each seed's folder the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nin_repro import atomic
from nin_repro.errors import NinError, TrainingFailed, UsageError
from nin_repro.evaluate import EvalSet, evaluate, evaluate_stacked, make_eval_fn, stacked_eval_fn
from nin_repro.health import StallWatch
from nin_repro.models import NIN, ConvNet, build_model
from nin_repro.parallel import data_mesh
from nin_repro.recipe import Recipe
from nin_repro.xla_options import jit_repeated, jit_run_once

CROP_PAD = 4  # +-4 px translations (Min Lin's --crop-border default, maxout's pad_randomized=4)


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Preprocessed float32 NHWC arrays (host) ready to move to the device."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    # A held-out validation split the dataset itself defines (SVHN's), preprocessed; None elsewhere.
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    seed: int
    test_error: float  # of the final parameters
    test_loss: float
    num_test: int
    steps: int
    epochs: float
    wall_s: float
    train_img_per_s: float
    run_dir: str
    attempt: int = 0  # 0 = the seed's first try; a > 0 started from run_key(seed, a)
    stalled: str | None = None  # why the run stalled (nin_repro.health), None if it did not
    stall_step: int | None = None
    max_dead_run: int = 0  # longest streak of steps with at least one dead class map
    max_dead_classes: int = 0  # most class maps dead at once in a batch
    # With early stopping (phase 1 of --recipe protocol): the epoch of the lowest evaluated error, and that error.
    best_epoch: int | None = None
    best_error: float | None = None


class Interrupted(NinError):
    """SIGTERM/SIGINT: the run checkpointed and stopped; re-running resumes it."""

    exit_code = 130


class Progress(Protocol):
    def start(self, total_steps: int, description: str) -> None: ...
    def update(self, step: int, *, epoch: float, loss: float, img_per_s: float) -> None: ...
    def epoch_end(self, record: dict) -> None: ...
    def close(self) -> None: ...


# --------------------------------------------------------------------------- optimizer


def _path_names(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


def make_optimizer(recipe: Recipe, params, classifier_path: tuple) -> optax.GradientTransformation:
    """Caffe's SGD: v <- m v - lr * mult * (g + wd * decay_mult * w); w <- w + v.

    Biases: 2x LR, no decay; the classifier layer (cccp6): 0.1x on weight and bias (docs/paper-notes.md,
    "Training recipe"). Two hyperparameters in the state, ``learning_rate`` (weights) and
    ``bias_learning_rate``, so the host schedule (incl. the plateau rule) sets them per step without
    recompiling, and the paper schedule can keep the biases' LR when it divides the weights' one."""

    def is_bias(path) -> bool:
        return "bias" in _path_names(path)

    def multiplier(path, _):
        names = _path_names(path)
        m = recipe.bias_lr_mult if is_bias(path) else 1.0
        if names[: len(classifier_path)] == classifier_path:
            m *= recipe.classifier_lr_mult
        return jnp.float32(m)

    mults = jax.tree_util.tree_map_with_path(multiplier, params)
    biases = jax.tree_util.tree_map_with_path(lambda path, _: is_bias(path), params)
    decay_mask = jax.tree.map(lambda b: not b, biases)

    def build(learning_rate, bias_learning_rate):
        if recipe.optimizer == "adam":  # [ours] demo only; no multipliers, decoupled decay
            return optax.adamw(learning_rate, weight_decay=recipe.weight_decay, mask=decay_mask)

        def scale(updates, _):
            return jax.tree.map(lambda u, m, b: -u * m * (bias_learning_rate if b else learning_rate), updates, mults, biases)

        return optax.chain(
            optax.add_decayed_weights(recipe.weight_decay, mask=decay_mask),
            optax.stateless(scale),
            # Momentum after the LR, as Caffe does, so an LR drop does not rescale the velocity.
            optax.trace(decay=recipe.momentum),
        )

    if recipe.optimizer not in ("sgd", "adam"):
        raise UsageError(f"unknown optimizer {recipe.optimizer!r}: choose sgd or adam")
    from nin_repro.baselines import MaxoutConfig, pylearn2_optimizer

    if isinstance(recipe.model, MaxoutConfig) and recipe.optimizer == "sgd":  # pylearn2's SGD: momentum ramp, LR scales, max-norm
        return pylearn2_optimizer(recipe.model, params)
    return optax.inject_hyperparams(build)(learning_rate=recipe.base_lr, bias_learning_rate=recipe.base_lr)


def lr_schedule(recipe: Recipe, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    """``step -> (2,)``: the weights' and the biases' LR factor at a step, computed on the device,
    so a compiled epoch needs no per-step LR list from the host. Equals ``recipe.lr_factor`` and
    ``recipe.bias_lr_factor`` at every step (tested); the plateau rule's factor and the base LR come
    in as one scalar per call, since the host decides them between epochs."""
    if recipe.schedule == "pylearn2":
        return _pylearn2_lr_schedule(recipe, steps_per_epoch)
    boundaries, factors = recipe.lr_boundaries(steps_per_epoch)
    boundaries_P, factors_P = np.asarray(boundaries, np.int32), np.asarray(factors, np.float32)
    warm = recipe.warmup_epochs * steps_per_epoch
    biases_drop = not (recipe.schedule == "paper" and not recipe.bias_lr_drops)

    def factor(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.int32)
        f = jnp.asarray(factors_P)[jnp.sum(step >= jnp.asarray(boundaries_P))]
        w = jnp.where(step < warm, (step + 1) / warm, 1.0) if warm > 0 else jnp.float32(1.0)
        return jnp.stack([f * w, (f if biases_drop else 1.0) * w]).astype(jnp.float32)

    return factor


def _pylearn2_lr_schedule(recipe: Recipe, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    """``lr_schedule`` for the "pylearn2" schedule: ``recipe.lr_factor`` on the device (the same
    formula, nin_repro.baselines.lr_factor_at), weights and biases alike."""
    from nin_repro.baselines import lr_factor_at

    scale = recipe.total_epochs(steps_per_epoch) / recipe.schedule_epochs(steps_per_epoch)
    warm = recipe.warmup_epochs * steps_per_epoch

    def factor(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.int32)
        f = lr_factor_at(recipe.lr_decay, step.astype(jnp.float32), steps_per_epoch, scale, recipe.base_lr, recipe.pylearn2_phase2, recipe.max_epochs)
        w = jnp.where(step < warm, (step + 1) / warm, 1.0) if warm > 0 else jnp.float32(1.0)
        return jnp.stack([f * w, f * w]).astype(jnp.float32)

    return factor


def momentum_schedule(recipe: Recipe, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
    """``step -> momentum`` on the device: pylearn2's MomentumAdjustor for the "pylearn2" schedule."""
    from nin_repro.baselines import momentum_at

    scale = recipe.total_epochs(steps_per_epoch) / recipe.schedule_epochs(steps_per_epoch)
    phase2 = (recipe.pylearn2_phase2, recipe.max_epochs or 0.0)
    return lambda step: jnp.float32(momentum_at(recipe.momentum_adjust, recipe.momentum, jnp.asarray(step, jnp.float32), steps_per_epoch, scale, *phase2))


# --------------------------------------------------------------------------- augmentation


def augment_batch(x_BHWC: jax.Array, key: jax.Array, flip: bool = True) -> jax.Array:
    """Zero-padded random crop (+-4 px) and horizontal flip with p = 0.5, per example, on device.
    Zero is the whitened data's mean, so padding adds no energy."""
    b, h, w, _ = x_BHWC.shape
    k_crop, k_flip = jax.random.split(key)
    padded = jnp.pad(x_BHWC, ((0, 0), (CROP_PAD, CROP_PAD), (CROP_PAD, CROP_PAD), (0, 0)))
    offsets_B2 = jax.random.randint(k_crop, (b, 2), 0, 2 * CROP_PAD + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

    out = jax.vmap(crop)(padded, offsets_B2)
    if flip:
        do_flip = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
        out = jnp.where(do_flip, out[:, :, ::-1, :], out)
    return out


# --------------------------------------------------------------------------- compiled steps


def default_chunk_steps(steps_per_epoch: int) -> int:
    """Steps per compiled call. On GPU/TPU the whole epoch is one compiled loop. XLA:CPU runs
    convolutions inside a while loop several times slower (measured: 4 steps 18x slower in a
    scan than unrolled), so on CPU each call is one step; the data stays on the device either way."""
    return 1 if jax.default_backend() == "cpu" else steps_per_epoch


@functools.partial(jax.jit, static_argnums=(2,))
def epoch_permutation(key: jax.Array, epoch: int | jax.Array, num_train: int) -> jax.Array:
    """The order of epoch ``epoch``: a function of (seed, epoch) only, so a run can resume."""
    return jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 1), epoch), num_train)


def make_loss_fn(graphdef, recipe: Recipe):
    """``(params, x, y, dropout key) -> (objective, (loss, logits))`` in training mode; with an
    auxiliary head (ablate-aux) its weighted loss is added to the objective, the main loss reported."""

    def loss_fn(params, x, y, key):
        model = nnx.merge(graphdef, params)
        rngs = nnx.Rngs(dropout=key)
        aux_logits = None
        if getattr(model, "aux", None) is not None:
            logits, aux_logits = model.with_aux(x, train=True, rngs=rngs)
        else:
            logits = model(x, train=True, rngs=rngs)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        objective = loss
        if aux_logits is not None:
            objective = loss + recipe.model.aux_weight * optax.softmax_cross_entropy_with_integer_labels(aux_logits, y).mean()
        return objective, (loss, logits)

    return loss_fn


def grads_over_seeds(loss_fn):
    """``value_and_grad`` of K stacked models' losses: the gradient of the summed vmapped loss,
    taken outside the vmap, so the weight gradients stay ordinary batched convolutions instead of
    grouped ones (jax-ml/jax#13800: slow grouped-conv backward on GPU). The seeds do not interact:
    d(sum_k L_k)/d(params_k) = dL_k/d(params_k)."""

    def grads_of(params_K, x_K, y_K, k_drop_K):
        def total(p_K):
            objective_K, aux = jax.vmap(loss_fn)(p_K, x_K, y_K, k_drop_K)
            return objective_K.sum(), aux

        return jax.value_and_grad(total, has_aux=True)(params_K)

    return grads_of


def grads_seed_by_seed(loss_fn):
    """``grads_over_seeds`` for XLA:CPU: the K seeds' gradients one after another in the same
    program (an unrolled loop, then stacked). Vmapped over the parameters, every 5x5 conv becomes a
    grouped conv, which XLA:CPU runs slowly: MNIST, batch 128, 2 cores, 4 seeds measured 0.15x of
    one seed's img/s summed over the 4 (13 vs 91 img/s); seed by seed they cost what K single-seed
    steps cost."""

    def grads_of(params_K, x_K, y_K, k_drop_K):
        per_seed = []
        for k in range(k_drop_K.shape[0]):
            seed_part = jax.tree.map(lambda a: a[k], (params_K, x_K, y_K, k_drop_K))
            per_seed.append(jax.value_and_grad(loss_fn, has_aux=True)(*seed_part))
        return jax.tree.map(lambda *a: jnp.stack(a), *per_seed)

    return grads_of


def make_train_steps(graphdef, tx, recipe: Recipe, num_steps: int, steps_per_epoch: int, mesh: Mesh | None = None, over_seeds: bool = False):
    """A jitted function running ``num_steps`` SGD steps as one compiled program:
    ``(state, x_train, y_train, perm, key, first_step, pos_in_epoch, lr_scale) -> (state, metrics)``.

    The epoch's order is a permutation drawn on device from fold_in(key, epoch); step ``s``
    draws its dropout and augmentation randomness from fold_in(key, s), and its LR is
    ``lr_scale * lr_schedule(recipe, steps_per_epoch)(s)`` (``lr_scale`` = base LR x the plateau
    rule's factor). Nothing per step goes through Python.

    ``mesh`` (nin_repro.parallel.data_mesh): each batch is split over its 'data' axis and the
    state and metrics come out replicated; XLA adds the gradient all-reduce. ``over_seeds``:
    the state and key carry a leading axis of K models (one per seed) trained at once by vmap;
    the images are shared, the order ``perm`` is (K, N), each seed's own, or (N,), one for all."""
    batch = recipe.batch_size
    lr_factor = lr_schedule(recipe, steps_per_epoch)
    loss_fn = make_loss_fn(graphdef, recipe)

    def batch_of(perm, key, x_train, y_train, first_step, pos_in_epoch, i):
        """One seed's batch of step ``first_step + i``: its images, labels and dropout key."""
        idx = jax.lax.dynamic_slice(perm, ((pos_in_epoch + i) * batch,), (batch,))
        x, y = x_train[idx], y_train[idx]
        if mesh is not None:  # the batch split over devices; everything downstream follows it
            x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P("data")))
            y = jax.lax.with_sharding_constraint(y, NamedSharding(mesh, P("data")))
        step_key = jax.random.fold_in(jax.random.fold_in(key, 2), first_step + i)
        k_drop, k_aug = jax.random.split(step_key)
        if recipe.augment:
            x = augment_batch(x, k_aug, flip=recipe.augment_flip)
        return x, y, k_drop

    momentum_of = momentum_schedule(recipe, steps_per_epoch)

    def update(grads, opt_state, params, lr, step):
        opt_state.hyperparams["learning_rate"] = lr[0]
        opt_state.hyperparams["bias_learning_rate"] = lr[1]
        if "momentum" in opt_state.hyperparams:  # only the pylearn2 optimizer ramps it
            opt_state.hyperparams["momentum"] = momentum_of(step)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    grads_of = jax.value_and_grad(loss_fn, has_aux=True)
    if over_seeds:  # K models: batches and updates vmapped, the gradient outside (grads_over_seeds)
        batch_of = jax.vmap(batch_of, in_axes=(0, 0, None, None, None, None, None))
        update = jax.vmap(update, in_axes=(0, 0, 0, None, None))
        grads_of = grads_seed_by_seed(loss_fn) if jax.default_backend() == "cpu" else grads_over_seeds(loss_fn)

    def run(state, x_train, y_train, perm, key, first_step, pos_in_epoch, lr_scale):
        if over_seeds and perm.ndim == 1:  # one order for all K (bench); training passes each seed's own, (K, N)
            perm = jnp.broadcast_to(perm, (key.shape[0], perm.shape[0]))

        def body(state, i):
            params, opt_state = state
            x, y, k_drop = batch_of(perm, key, x_train, y_train, first_step, pos_in_epoch, i)
            (_, (loss, logits)), grads = grads_of(params, x, y, k_drop)
            lr = lr_scale * lr_factor(first_step + i)  # (weights, biases)
            params, opt_state = update(grads, opt_state, params, lr, first_step + i)
            metrics = {  # per seed: scalars, or (K,) with over_seeds
                "loss": loss,
                "correct": jnp.sum(jnp.argmax(logits, -1) == y, axis=-1),
                # Classes whose score is 0 for every example of the batch: dead class maps (health.py).
                "dead_classes": jnp.sum(jnp.all(logits == 0, axis=-2), axis=-1),
                "lr": lr[0],  # the weights' LR, the same for every seed
            }
            return (params, opt_state), metrics

        if num_steps == 1:  # no loop at all for XLA:CPU (see default_chunk_steps)
            state, metrics = body(state, 0)
            metrics = jax.tree.map(lambda a: a[None], metrics)
        else:
            state, metrics = jax.lax.scan(body, state, jnp.arange(num_steps))
        # (steps,) or, with over_seeds, (K, steps): seeds first, as the caller reads them.
        return state, jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), metrics) if over_seeds else metrics  # lr: (steps,)

    # Donate the training state: parameters and momentum are updated in place.
    if mesh is None:
        return jit_repeated(run, donate_argnums=(0,))
    return jit_repeated(run, donate_argnums=(0,), out_shardings=NamedSharding(mesh, P()))


# --------------------------------------------------------------------------- the run


def logits_fn_for(graphdef):
    def logits(params, x):
        return nnx.merge(graphdef, params)(x, train=False)

    return logits


ATTEMPT_SALT = 1000  # attempt a > 0 of a seed: run_key = fold_in(key(seed), 1000 + a)


def run_key(seed: int, attempt: int = 0, impl: str = "threefry2x32") -> jax.Array:
    """The key of one try of a seed: init = fold_in(run_key, 0), data order fold_in(run_key, 1),
    step randomness fold_in(run_key, 2). Attempt 0 is key(seed), so a first try is what it always was.
    ``impl``: the generator (``Recipe.rng_impl``); another one gives other random streams."""
    key = jax.random.key(seed, impl=impl)
    return key if attempt == 0 else jax.random.fold_in(key, ATTEMPT_SALT + attempt)


def run_key_text(seed: int, attempt: int = 0) -> str:
    """How ``run_key`` was made, for run.json."""
    return f"key({seed})" if attempt == 0 else f"fold_in(key({seed}), {ATTEMPT_SALT + attempt})"


def abstract_model(config) -> NIN | ConvNet:
    """The network's structure with shapes for values: nothing is computed or compiled."""
    return nnx.eval_shape(lambda: build_model(config, rngs=nnx.Rngs(0)))


@functools.lru_cache(maxsize=32)
def _initializer(config) -> tuple[nnx.GraphDef, Callable]:
    def init(key):
        return nnx.state(build_model(config, rngs=nnx.Rngs(params=key)))

    return nnx.split(abstract_model(config))[0], jit_run_once(init)


def init_model(recipe: Recipe, seed: int, attempt: int = 0) -> NIN | ConvNet:
    graphdef, init = _initializer(recipe.model)
    return nnx.merge(graphdef, init(jax.random.fold_in(run_key(seed, attempt, recipe.rng_impl), 0)))


@dataclasses.dataclass
class _Program:
    """What compiles once per recipe and is shared by its seeds."""

    tx: optax.GradientTransformation
    opt_init: Callable  # tx.init, compiled once (jit_run_once)
    eval_fn: Callable
    eval_fn_K: Callable  # the same for K stacked models (one vmapped program)
    steps: dict[tuple[int, Mesh], Callable]  # by (steps per call, mesh)


@functools.lru_cache(maxsize=8)
def _program(recipe: Recipe) -> _Program:
    model = abstract_model(recipe.model)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(recipe, params, model.classifier_path())
    eval_fn = make_eval_fn(logits_fn_for(graphdef))
    return _Program(tx, jit_run_once(tx.init), eval_fn, stacked_eval_fn(eval_fn), {})


def eval_program(recipe: Recipe) -> Callable:
    """``recipe``'s compiled evaluation, the one its training runs use (compiled once)."""
    return _program(compiled_recipe(recipe)).eval_fn


def compiled_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` without what no compiled program reads: the data (an argument), the seeds and
    the initial values (keys and parameters are arguments; the init stds only shape the first
    parameters), the base LR (the ``lr_scale`` argument; the optimizer's LR state is overwritten
    every step; kept for the pylearn2 schedule, whose factor reads it) and the host-side checks. Recipes with the same compiled recipe share one program
    (``_Run``), so e.g. init-study's variants of the input or of the init compile once."""
    model = recipe.model
    if hasattr(model, "blocks"):
        model = dataclasses.replace(model, blocks=tuple(dataclasses.replace(b, init_std=None) for b in model.blocks))
    # Initial values only: cleared where the network has them (None = He init in every network; the
    # program only takes the network's structure, by nnx.eval_shape).
    model = dataclasses.replace(model, **{name: value for name, value in (("init_std", None), ("head_init_std", 0.0)) if hasattr(model, name)})
    # The pylearn2 schedule's on-device factor reads the base LR (ExponentialDecay's floor min_lr / base_lr).
    base_lr = recipe.base_lr if recipe.schedule == "pylearn2" else 0.0
    host_only = dict(dataset="", preprocess="", seeds=(0,), attempts=1, dead_steps=1, stall_epochs=1.0, stall_tolerance=0.0, ours=())
    return dataclasses.replace(recipe, model=model, base_lr=base_lr, **host_only)


class _Plateau:
    """The paper's rule: divide the LR by 10 when training accuracy stops improving, twice
    (final LR = 1/100); stop when it stalls once more or at the maximum epochs."""

    def __init__(self, recipe: Recipe):
        self.r, self.factor, self.best, self.waited, self.drops, self.done = recipe, 1.0, -1.0, 0, 0, False

    def observe(self, train_accuracy: float) -> None:
        if train_accuracy > self.best + self.r.plateau_min_delta:
            self.best, self.waited = train_accuracy, 0
            return
        self.waited += 1
        if self.waited >= self.r.plateau_patience:
            if self.drops >= self.r.plateau_drops:
                self.done = True
            else:
                self.factor, self.drops, self.waited = self.factor / 10, self.drops + 1, 0


class _EarlyStop:
    """pylearn2's ``MonitorBased(prop_decrease=0, N=patience)`` on the evaluated error, with
    ``MonitorBasedSaveBest``'s choice of best (termination_criteria/__init__.py, train_extensions/
    best_params.py): an error strictly below the best so far is the new best and restarts the count;
    the run stops after ``patience`` evaluated epochs in a row without one. pylearn2 also evaluates
    once before the first epoch; we start at epoch 1 [ours]."""

    def __init__(self, patience: int):
        self.patience, self.best, self.best_epoch, self.waited, self.done = patience, None, None, 0, False

    def observe(self, epoch: int, evaluation) -> None:
        error = evaluation.error
        if self.best is None or error < self.best:
            self.best, self.best_epoch, self.waited = error, epoch, 0
        else:
            self.waited += 1
            self.done = self.waited >= self.patience


class _ReachLoss:
    """pylearn2's ``ChannelTarget``: stop once the evaluated mean NLL is at or below ``target``
    (termination_criteria/__init__.py; mnist_continued.yaml). pylearn2 also checks once before the
    first epoch; we start at epoch 1 [ours]."""

    def __init__(self, target: float):
        self.target, self.best, self.best_epoch, self.done = target, None, None, False

    def observe(self, epoch: int, evaluation) -> None:
        self.done = evaluation.loss <= self.target


def train_and_evaluate(
    recipe: Recipe,
    data: PreparedData,
    workdir: str | Path,
    seed: int,
    progress: Progress | None = None,
    eval_every: int = 1,
    chunk_steps: int | None = None,
    checkpoint_every_s: float = 600.0,
    run_info: dict | None = None,
    attempt: int = 0,
    stop_on_stall: bool = True,
) -> RunResult:
    """Train one seed of ``recipe`` on ``data``; write the run folder; return the final test error.

    Resumes from the run folder's last checkpoint of the same recipe, if there is one. ``run_info``
    (e.g. the fitted preprocessing's path and sha256) is stored in every checkpoint."""
    (result,) = train_and_evaluate_seeds(recipe, data, [Path(workdir)], [seed], progress, eval_every, chunk_steps, checkpoint_every_s, run_info, [attempt], stop_on_stall)
    return result


def train_and_evaluate_seeds(
    recipe: Recipe,
    data: PreparedData,
    workdirs: list[Path],
    seeds: list[int],
    progress: Progress | None = None,
    eval_every: int = 1,
    chunk_steps: int | None = None,
    checkpoint_every_s: float = 600.0,
    run_info: dict | None = None,
    attempts: list[int] | None = None,
    stop_on_stall: bool = True,
    early_stop: int | None = None,
    target_loss: float | None = None,
    save_best: Path | None = None,
    init_params: Path | None = None,
) -> list[RunResult]:
    """Train K seeds at once, one vmapped program (K = 1: the plain step, no vmap); each seed
    writes its own run folder exactly as a run of that seed alone would, and gets the same numbers.

    ``attempts[i]``: which try of seed i this is (its key is ``run_key(seed, attempt)``). A seed
    that stalls (nin_repro.health) is reported with ``RunResult.stalled`` set, never raised: the
    group stops once every seed has stalled (with ``stop_on_stall``; the study trains them to the
    end), and the caller decides whether to retry it.

    The K seeds share one checkpoint of their stacked state, in the first seed's folder under a
    name that lists the seeds: re-running the same K seeds resumes it (a finished group is not
    trained again); the same seeds run one at a time start afresh.

    ``early_stop``: evaluate every epoch and stop ``early_stop`` epochs after the lowest test
    error (``_EarlyStop``; one seed; the caller passes its validation images as the test set), the
    parameters of each new lowest saved to ``save_best``. ``target_loss``: stop once the test
    loss is at or below it (``_ReachLoss``). ``init_params``: start from these saved parameters
    (``save_params``) instead of a fresh initialisation."""
    from nin_repro.checkpoint import Checkpointer

    attempts = list(attempts) if attempts is not None else [0] * len(seeds)
    if len(workdirs) != len(seeds) or len(attempts) != len(seeds) or not seeds:
        raise ValueError(f"one run folder and attempt per seed: {len(workdirs)} folders, attempts {attempts} for seeds {seeds}")
    if len(seeds) > 1 and recipe.schedule == "plateau":
        # The plateau rule decides each seed's LR drops and its last epoch from its own training
        # accuracy; the seeds would drift apart in length. Run them one at a time.
        raise UsageError("the plateau schedule trains one seed at a time: run the seeds separately (--no-parallel-seeds)")
    stops = early_stop is not None or target_loss is not None
    if stops and (len(seeds) > 1 or eval_every != 1 or (early_stop is not None and target_loss is not None)):
        raise ValueError("a stop rule decides each seed's length from its own evaluation after every epoch: one rule, one seed, eval_every=1")
    from nin_repro.runlock import run_folder_lock

    with run_folder_lock([Path(w) for w in workdirs]), Checkpointer(Path(workdirs[0]), recipe, every_s=checkpoint_every_s, seeds=seeds, attempts=attempts) as ckpt:
        stop_rule = (_EarlyStop(early_stop) if early_stop is not None else _ReachLoss(target_loss)) if stops else None
        run = _Run(recipe, data, [Path(w) for w in workdirs], list(seeds), attempts, ckpt, run_info or {}, chunk_steps, stop_on_stall, stop_rule, save_best, init_params)
        return run.train(progress, eval_every)


@dataclasses.dataclass
class _Chunk:
    """One compiled call: ``steps`` steps of ``epoch`` from ``pos`` (``first_step`` overall).
    Filled in when queued: its metrics (device arrays, not yet read) and, if the chunk ends an
    evaluated epoch, a function returning that evaluation."""

    epoch: int
    pos: int
    first_step: int
    steps: int
    ends_epoch: bool
    last: bool
    dispatched: float = 0.0
    metrics: dict | None = None
    evals: Callable[[], list] | None = None


@dataclasses.dataclass
class RunPosition:
    """Where a run stands; a checkpoint stores exactly this and the training state. The running
    sums of the epoch and the stall checks are per seed."""

    epoch: int = 0
    pos: int = 0  # steps done in this epoch
    step: int = 0
    epoch_loss: list[float] = dataclasses.field(default_factory=list)
    epoch_correct: list[int] = dataclasses.field(default_factory=list)
    epoch_seen: int = 0  # steps
    train_time: float = 0.0
    wall: float = 0.0
    watch: list[dict] = dataclasses.field(default_factory=list)  # StallWatch.state() per seed

    @classmethod
    def start(cls, k: int) -> "RunPosition":
        return cls(epoch_loss=[0.0] * k, epoch_correct=[0] * k, watch=[{}] * k)

    @classmethod
    def from_meta(cls, meta: dict, k: int) -> "RunPosition":
        known = {f.name for f in dataclasses.fields(cls)}
        pos = cls.start(k)
        pos.__dict__.update({name: v for name, v in meta.items() if name in known})
        for name in ("epoch_loss", "epoch_correct"):  # a one-seed checkpoint may store scalars
            setattr(pos, name, np.broadcast_to(getattr(pos, name), (k,)).tolist())
        return pos


class _Run:
    """One training run of K seeds (K = 1 without vmap): the named steps of ``train``."""

    def __init__(self, recipe, data, workdirs, seeds, attempts, ckpt, run_info, chunk_steps, stop_on_stall, stop_rule=None, save_best=None, init_params=None):
        self.recipe, self.data, self.workdirs, self.seeds, self.attempts = recipe, data, workdirs, seeds, attempts
        self.ckpt, self.run_info, self.stop_on_stall = ckpt, run_info, stop_on_stall
        # A stop rule (_EarlyStop, _ReachLoss; K = 1), where its best parameters go, and saved
        # parameters to start from instead of an initialisation (nin_repro.protocol).
        self.stop_rule, self.save_best, self.init_params = stop_rule, save_best, init_params
        n_train = len(data.x_train)
        if recipe.batch_size > n_train:
            raise UsageError(f"batch size {recipe.batch_size} is larger than the training set ({n_train} images): pass a smaller --batch-size")
        # Each epoch is a fresh permutation; the fewer-than-a-batch left over are skipped that epoch.
        self.steps_per_epoch = n_train // recipe.batch_size
        self.total_steps = recipe.total_steps(self.steps_per_epoch)
        self.max_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.chunk = min(chunk_steps or default_chunk_steps(self.steps_per_epoch), self.steps_per_epoch)
        self.K = len(seeds)
        self.who = f"seed {seeds[0]}" if self.K == 1 else "seeds " + ", ".join(map(str, seeds))
        self.program = _program(compiled_recipe(recipe))
        self.plateau = _Plateau(recipe) if recipe.schedule == "plateau" else None  # K = 1 (see train_and_evaluate_seeds)
        self.watches = [StallWatch(data.num_classes, recipe.dead_steps, recipe.stall_epochs, recipe.stall_tolerance) for _ in seeds]
        self.metrics_paths = [w / "metrics.jsonl" for w in workdirs]

    # -- stacking: one tree per seed <-> what the step takes (stacked on a leading K axis for K > 1)
    def join(self, per_seed: list):
        return jax.tree.map(lambda *a: jnp.stack(a), *per_seed) if self.K > 1 else per_seed[0]

    def seed_part(self, tree, i: int):
        return jax.tree.map(lambda a: a[i], tree) if self.K > 1 else tree

    def train(self, progress: Progress | None, eval_every: int) -> list[RunResult]:
        """Chunks of compiled steps, one kept in flight: chunk c + 1 (and the epoch's evaluation)
        is queued on the device before chunk c's metrics are read, so the device does not idle
        while the host logs, checks health and writes metrics. A stall or a stop signal therefore
        acts after the chunk in flight (on a GPU, one epoch); the plateau rule and a checkpoint wait
        for their epoch's metrics before the next epoch is queued."""
        for workdir in self.workdirs:
            workdir.mkdir(parents=True, exist_ok=True)
        self.init_states()
        self.position = self.restore_or_start()
        self.progress, self.eval_every, self.in_flight, self.perm = progress, eval_every, None, (None, None)
        if progress:
            resumed = f" (resumed at step {self.position.step})" if self.position.step else ""
            progress.start(self.total_steps, self.who + resumed)
        self.t_start = time.perf_counter() - self.position.wall
        self.last_read = time.perf_counter()
        for chunk in self.chunks():
            if self.halted() or (self.plateau and self.plateau.done) or (self.stop_rule and self.stop_rule.done):  # as of the metrics read so far
                break
            if self.ckpt.stop_requested:
                self.stop()
            self.dispatch(chunk)
            # The plateau rule sets the next epoch's LR from this one, early stopping decides whether
            # there is a next one; a checkpoint saves this state.
            if chunk.ends_epoch and (self.plateau or self.stop_rule or self.ckpt.due()):
                self.settle()
                self.checkpoint(force=False)
        self.settle()
        self.checkpoint(force=True)
        if self.ckpt.stop_requested:
            self.stop()
        return self.finish(progress)

    def init_states(self) -> None:
        states = []
        for seed, attempt in zip(self.seeds, self.attempts):
            if self.init_params is not None:  # K = 1: a run continued from saved parameters
                self.graphdef, params = load_params(self.init_params, self.recipe)
            else:
                self.graphdef, params = nnx.split(init_model(self.recipe, seed, attempt), nnx.Param)
            states.append((params, self.program.opt_init(params)))
        self.mesh = data_mesh(self.recipe.batch_size)
        self.on_mesh = NamedSharding(self.mesh, P())  # the dataset and the training state on every device
        keys = [run_key(seed, attempt, self.recipe.rng_impl) for seed, attempt in zip(self.seeds, self.attempts)]
        self.x_train, self.y_train, self.keys = jax.device_put((self.data.x_train, self.data.y_train, keys), self.on_mesh)
        self.key = self.join(self.keys)
        self.state = self.join(states)
        self.test_set = EvalSet.build(self.data.x_test, self.data.y_test, self.recipe.eval_batch_size)

    def restore_or_start(self) -> RunPosition:
        resumed = self.ckpt.restore(self.state)
        if resumed is None:
            # A fresh start leaves an earlier metrics.jsonl alone until this run has a finished,
            # finite epoch to put in its place (a run that fails at once must not erase it).
            self.history = [[] for _ in self.metrics_paths]
            self.state = jax.device_put(self.state, self.on_mesh)
            return RunPosition.start(self.K)
        self.state, meta = resumed
        self.state = jax.device_put(self.state, self.on_mesh)
        position = RunPosition.from_meta(meta["position"], self.K)
        for watch, saved in zip(self.watches, position.watch):
            watch.__dict__.update(saved)
        if self.plateau:
            self.plateau.__dict__.update(meta["plateau"])
        if self.stop_rule:
            self.stop_rule.__dict__.update(meta["stop_rule"])
        # The epochs the checkpoint covers; later lines (written after it) are dropped when the
        # next epoch is written, by an atomic rewrite of the whole file.
        self.history = [path.read_text().splitlines()[: position.epoch] if path.exists() else [] for path in self.metrics_paths]
        return position

    def halted(self) -> bool:
        """With stop_on_stall, a group stops once every seed in it has stalled."""
        return self.stop_on_stall and all(w.stalled for w in self.watches)

    def compiled_steps(self, k: int):
        key = (k, self.steps_per_epoch, self.mesh, self.K > 1)
        if key not in self.program.steps:
            self.program.steps[key] = make_train_steps(self.graphdef, self.program.tx, self.recipe, k, self.steps_per_epoch, self.mesh, over_seeds=self.K > 1)
        return self.program.steps[key]

    def chunks(self) -> Iterator[_Chunk]:
        """Every compiled call left from the restored position: an epoch in calls of at most
        ``self.chunk`` steps; the run may end inside an epoch (fractional --epochs)."""
        epoch, pos, step = self.position.epoch, self.position.pos, self.position.step
        while epoch < self.max_epochs and step < self.total_steps:
            k = min(self.chunk, self.steps_per_epoch - pos, self.total_steps - step)
            ends_epoch = pos + k == self.steps_per_epoch or step + k >= self.total_steps
            yield _Chunk(epoch, pos, step, k, ends_epoch, last=step + k >= self.total_steps)
            pos, step = pos + k, step + k
            if ends_epoch:
                epoch, pos = epoch + 1, 0

    @contextlib.contextmanager
    def device_errors(self, step: int):
        try:
            yield
        except Exception as e:  # XLA's runtime error type moved between jax versions
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            raise TrainingFailed(
                f"{self.who}: the device ran out of memory at batch size {self.recipe.batch_size} (step {step}); pass a smaller --batch-size"
                + (" or train the seeds one at a time (--no-parallel-seeds)" if self.K > 1 else "")
            ) from None

    def dispatch(self, chunk: _Chunk) -> None:
        """Queue ``chunk`` (and, when it ends an epoch that is evaluated, the evaluation of its
        result) on the device, then read the chunk queued before it."""
        if self.perm[0] != chunk.epoch:  # each seed its own order, as it would have alone; the images are shared
            self.perm = (chunk.epoch, self.join([epoch_permutation(k_, chunk.epoch, len(self.data.x_train)) for k_ in self.keys]))
        lr_scale = np.float32(self.recipe.base_lr * (self.plateau.factor if self.plateau else 1.0))
        chunk.dispatched = time.perf_counter()
        with self.device_errors(chunk.first_step):
            # Explicit copies of the chunk's few scalars; the guard proves nothing else moves.
            args = jax.device_put((self.perm[1], self.key, np.int32(chunk.first_step), np.int32(chunk.pos), lr_scale), self.on_mesh)
            with jax.transfer_guard("disallow"):
                self.state, chunk.metrics = self.compiled_steps(chunk.steps)(self.state, self.x_train, self.y_train, *args)
        if chunk.ends_epoch and (chunk.last or (self.eval_every and (chunk.epoch + 1) % self.eval_every == 0)):
            chunk.evals = self.evaluate_all(read=False)  # before the next chunk takes (donated) state
        previous, self.in_flight = self.in_flight, chunk
        if previous:
            self.read(previous)

    def settle(self) -> None:
        """Read the chunk in flight: afterwards the position describes the state."""
        if self.in_flight:
            chunk, self.in_flight = self.in_flight, None
            self.read(chunk)

    def read(self, chunk: _Chunk) -> None:
        """Wait for ``chunk``'s metrics; check health, add them to the epoch's sums, report."""
        pos, k = self.position, chunk.steps
        with self.device_errors(chunk.first_step):
            losses_Kk = np.asarray(chunk.metrics["loss"]).reshape(self.K, k)
        now = time.perf_counter()
        dt, self.last_read = now - max(chunk.dispatched, self.last_read), now
        self.check_health(chunk.first_step, losses_Kk, np.asarray(chunk.metrics["dead_classes"]).reshape(self.K, k))
        pos.train_time += dt
        pos.epoch_loss = (np.asarray(pos.epoch_loss) + losses_Kk.sum(axis=1)).tolist()
        pos.epoch_correct = (np.asarray(pos.epoch_correct) + np.asarray(chunk.metrics["correct"]).reshape(self.K, k).sum(axis=1)).tolist()
        pos.epoch_seen += k
        pos.epoch, pos.pos, pos.step = chunk.epoch, chunk.pos + k, chunk.first_step + k
        self.lr = float(np.asarray(chunk.metrics["lr"])[-1])
        if self.progress:
            self.progress.update(pos.step, epoch=pos.step / self.steps_per_epoch, loss=float(losses_Kk[:, -1].mean()), img_per_s=self.K * k * self.recipe.batch_size / dt)
        if chunk.ends_epoch:
            self.end_epoch(chunk)

    def stop(self) -> None:
        """A signal: checkpoint where the run stands, then raise Interrupted."""
        self.settle()
        self.checkpoint(force=True)
        raise Interrupted(f"{self.who}: stopped by {self.ckpt.stop_requested} at step {self.position.step}; checkpoint saved, run the same command again to resume")

    def check_health(self, first_step: int, losses_Kk: np.ndarray, dead_Kk: np.ndarray) -> None:
        """A non-finite loss stops the run; dead class maps count towards a stall (health.py)."""
        for s, seed in enumerate(self.seeds):
            bad = np.flatnonzero(~np.isfinite(losses_Kk[s]))
            if bad.size:
                raise TrainingFailed(
                    f"seed {seed}: the loss became {losses_Kk[s, bad[0]]} at step {first_step + int(bad[0])}; the run is stopped "
                    "(try a smaller learning rate with --set base_lr=..., or another seed)"
                )
            self.watches[s].observe_steps(first_step, dead_Kk[s])

    def end_epoch(self, chunk: _Chunk) -> None:
        """Log the epoch that ``chunk`` ended for every seed, with its evaluation if it had one."""
        pos, epoch = self.position, chunk.epoch
        seen = max(pos.epoch_seen, 1)
        train_loss_K = np.asarray(pos.epoch_loss) / seen
        train_acc_K = np.asarray(pos.epoch_correct) / (seen * self.recipe.batch_size)
        if self.plateau:
            self.plateau.observe(float(train_acc_K[0]))
        if pos.pos == self.steps_per_epoch:  # a whole epoch: the loss test of the stall check applies
            for s, watch in enumerate(self.watches):
                watch.observe_epoch(epoch + 1, pos.step, float(train_loss_K[s]))
        evals = chunk.evals() if chunk.evals else None
        if self.stop_rule:
            self.stop_rule.observe(epoch + 1, evals[0])
            if self.save_best and self.stop_rule.best_epoch == epoch + 1:  # MonitorBasedSaveBest
                save_params(self.save_best, self.state[0])
        for s, seed in enumerate(self.seeds):
            record = {
                "epoch": epoch + 1,
                "step": pos.step,
                "lr": self.lr,
                "train_loss": float(train_loss_K[s]),
                "train_error": 1.0 - float(train_acc_K[s]),
                "wall_s": round(time.perf_counter() - self.t_start, 3),
            }
            if evals:
                record.update(test_error=evals[s].error, test_loss=evals[s].loss)
            # The whole history, rewritten atomically: a reader (or a crash) never sees half a line,
            # and the file is only replaced once an epoch has finished with a finite loss.
            self.history[s].append(json.dumps(record))
            atomic.write_text(self.metrics_paths[s], "".join(line + "\n" for line in self.history[s]))
            if self.progress:
                self.progress.epoch_end(record if self.K == 1 else {**record, "seed": seed})
        pos.epoch, pos.pos, pos.epoch_seen = epoch + 1, 0, 0
        pos.epoch_loss, pos.epoch_correct = [0.0] * self.K, [0] * self.K

    def evaluate_all(self, read: bool = True):
        """Every seed's test error: one program for all K seeds (vmapped), or the plain one for K = 1.
        ``read=False``: queue it and return a function that waits for the results."""
        fn = functools.partial(evaluate, self.program.eval_fn) if self.K == 1 else functools.partial(evaluate_stacked, self.program.eval_fn_K)
        pending = fn(self.state[0], self.test_set, read=False)

        def results() -> list:
            out = pending()
            return [out] if self.K == 1 else out

        return results() if read else results

    def checkpoint(self, force: bool) -> None:
        # The RNG needs no state: every key is fold_in(run_key(seed, attempt), epoch or step).
        pos = self.position
        pos.wall = time.perf_counter() - self.t_start
        pos.watch = [w.state() for w in self.watches]
        seed_meta = {"seed": self.seeds[0]} if self.K == 1 else {"seed": self.seeds[0], "seeds": self.seeds}
        plateau = {k: v for k, v in vars(self.plateau).items() if k != "r"} if self.plateau else {}
        stop_rule = vars(self.stop_rule) if self.stop_rule else {}
        meta = {**seed_meta, "attempts": self.attempts, "run": self.run_info, "position": dataclasses.asdict(pos), "plateau": plateau, "stop_rule": stop_rule}
        self.ckpt.save(pos.step, self.state, meta, force=force)

    def finish(self, progress: Progress | None) -> list[RunResult]:
        wall = time.perf_counter() - self.t_start  # of the whole group
        pos, results = self.position, []
        finals = self.evaluate_all()
        for s, seed in enumerate(self.seeds):
            params = self.seed_part(self.state[0], s)
            final = finals[s]
            try:
                save_params(self.workdirs[s] / "params", params)
            except (OSError, ValueError) as e:  # orbax/tensorstore wrap a full disk in a ValueError
                from nin_repro.checkpoint import describe_storage_error

                raise TrainingFailed(
                    f"{self.who}: could not write the final parameters to {self.workdirs[s] / 'params'} ({describe_storage_error(e)}): "
                    "free space under --workdir (or fix its permissions) and run the same command again (it resumes from the final checkpoint)"
                ) from None
            watch = self.watches[s]
            results.append(
                RunResult(
                    seed=seed,
                    test_error=final.error,
                    test_loss=final.loss,
                    num_test=final.num_examples,
                    steps=pos.step,
                    epochs=pos.step / self.steps_per_epoch,
                    wall_s=wall / self.K,  # each seed's share of the group's time: sums over seeds stay the real total
                    # Each model's own rate: the group's summed rate is K times this.
                    train_img_per_s=pos.step * self.recipe.batch_size / pos.train_time if pos.train_time else 0.0,
                    run_dir=str(self.workdirs[s]),
                    attempt=self.attempts[s],
                    stalled=watch.stalled,
                    stall_step=watch.stall_step,
                    max_dead_run=watch.max_run,
                    max_dead_classes=watch.max_dead,
                    best_epoch=self.stop_rule.best_epoch if self.stop_rule else None,
                    best_error=self.stop_rule.best if self.stop_rule else None,
                )
            )
        if progress:
            progress.close()
        return results


# --------------------------------------------------------------------------- checkpoints


def save_params(path: Path, params) -> None:
    import orbax.checkpoint as ocp

    path = Path(path).resolve()
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, nnx.to_pure_dict(params), force=True)
    ckpt.wait_until_finished()


def load_params(path: Path, recipe: Recipe):
    """Parameters saved by ``save_params`` as an nnx.State matching ``recipe.model``."""
    import orbax.checkpoint as ocp

    graphdef, params = nnx.split(abstract_model(recipe.model), nnx.Param)
    restored = ocp.StandardCheckpointer().restore(Path(path).resolve())
    nnx.replace_by_pure_dict(params, restored)
    return graphdef, params
