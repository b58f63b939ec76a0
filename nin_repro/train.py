"""Training: SGD with the Caffe update, the dataset on the device, shuffling and augmentation
inside the compiled step, exact evaluation, dead-last-layer and non-finite-loss checks.

``train_and_evaluate(recipe, data, workdir, seed)`` runs one seed and writes its run folder:
``metrics.jsonl`` (one line per epoch), ``params/`` (orbax); ``train_and_evaluate_seeds`` trains
several seeds at once in one vmapped program and writes each seed's folder the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nin_repro.errors import NinError, TrainingFailed, UsageError
from nin_repro.evaluate import EvalSet, evaluate, make_eval_fn
from nin_repro.models import ConvNet, NIN, build_model
from nin_repro.parallel import data_mesh
from nin_repro.recipe import Recipe

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

    Biases: 2x LR, no decay; the classifier layer (cccp6): 0.1x on weight and bias (nin-facts §3).
    The LR is a hyperparameter in the state so the host schedule (incl. the plateau rule) sets it
    per step without recompiling."""

    def is_bias(path) -> bool:
        return "bias" in _path_names(path)

    def multiplier(path, _):
        names = _path_names(path)
        m = recipe.bias_lr_mult if is_bias(path) else 1.0
        if names[: len(classifier_path)] == classifier_path:
            m *= recipe.classifier_lr_mult
        return jnp.float32(m)

    mults = jax.tree_util.tree_map_with_path(multiplier, params)
    decay_mask = jax.tree_util.tree_map_with_path(lambda path, _: not is_bias(path), params)

    def build(learning_rate):
        if recipe.optimizer == "adam":  # [ours] demo only; no multipliers, decoupled decay
            return optax.adamw(learning_rate, weight_decay=recipe.weight_decay, mask=decay_mask)
        return optax.chain(
            optax.add_decayed_weights(recipe.weight_decay, mask=decay_mask),
            optax.stateless(lambda updates, _: jax.tree.map(lambda u, m: u * m, updates, mults)),
            optax.scale_by_learning_rate(learning_rate, flip_sign=True),
            # Momentum after the LR, as Caffe does, so an LR drop does not rescale the velocity.
            optax.trace(decay=recipe.momentum),
        )

    if recipe.optimizer not in ("sgd", "adam"):
        raise UsageError(f"unknown optimizer {recipe.optimizer!r}: choose sgd or adam")
    return optax.inject_hyperparams(build)(learning_rate=recipe.base_lr)


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


def make_train_steps(graphdef, tx, recipe: Recipe, num_steps: int, mesh: Mesh | None = None, over_seeds: bool = False):
    """A jitted function running ``num_steps`` SGD steps as one compiled program.

    The epoch's order is a permutation drawn on device from fold_in(key, epoch); step ``s``
    draws its dropout and augmentation randomness from fold_in(key, s). Nothing per step goes
    through Python.

    ``mesh`` (nin_repro.parallel.data_mesh): each batch is split over its 'data' axis and the
    state and metrics come out replicated; XLA adds the gradient all-reduce. ``over_seeds``:
    the state and key carry a leading axis of K models (one per seed) trained at once by vmap;
    the images are shared, the order ``perm`` is (K, N), each seed's own, or (N,), one for all."""
    batch = recipe.batch_size

    def loss_fn(params, x, y, key):
        model = nnx.merge(graphdef, params)
        rngs = nnx.Rngs(dropout=key)
        aux_logits = None
        if getattr(model, "aux", None) is not None:  # ablate-aux: the auxiliary loss trains, the main loss is reported
            logits, aux_logits = model.with_aux(x, train=True, rngs=rngs)
        else:
            logits = model(x, train=True, rngs=rngs)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        objective = loss
        if aux_logits is not None:
            objective = loss + recipe.model.aux_weight * optax.softmax_cross_entropy_with_integer_labels(aux_logits, y).mean()
        return objective, (loss, logits)

    def run(state, x_train, y_train, perm, key, first_step, pos_in_epoch, lrs):
        def body(state, i):
            params, opt_state = state
            idx = jax.lax.dynamic_slice(perm, ((pos_in_epoch + i) * batch,), (batch,))
            x, y = x_train[idx], y_train[idx]
            if mesh is not None:  # the batch split over devices; everything downstream follows it
                x = jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P("data")))
                y = jax.lax.with_sharding_constraint(y, NamedSharding(mesh, P("data")))
            step_key = jax.random.fold_in(jax.random.fold_in(key, 2), first_step + i)
            k_drop, k_aug = jax.random.split(step_key)
            if recipe.augment:
                x = augment_batch(x, k_aug, flip=recipe.augment_flip)
            (_, (loss, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, k_drop)
            opt_state.hyperparams["learning_rate"] = lrs[i]
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            metrics = {
                "loss": loss,
                "correct": jnp.sum(jnp.argmax(logits, -1) == y),
                # 0 exactly when every class score of every example is 0: the dead last layer.
                "max_abs_logit": jnp.max(jnp.abs(logits)),
            }
            return (params, opt_state), metrics

        if num_steps == 1:  # no loop at all for XLA:CPU (see default_chunk_steps)
            state, metrics = body(state, 0)
            return state, jax.tree.map(lambda a: a[None], metrics)
        return jax.lax.scan(body, state, jnp.arange(num_steps))

    if over_seeds:
        run_K = jax.vmap(run, in_axes=(0, None, None, 0, 0, None, None, None))

        def run(state, x_train, y_train, perm, key, first_step, pos_in_epoch, lrs):
            if perm.ndim == 1:  # one order for all K (bench); training passes each seed's own, (K, N)
                perm = jnp.broadcast_to(perm, (key.shape[0], perm.shape[0]))
            return run_K(state, x_train, y_train, perm, key, first_step, pos_in_epoch, lrs)

    # Donate the training state: parameters and momentum are updated in place.
    if mesh is None:
        return jax.jit(run, donate_argnums=(0,))
    return jax.jit(run, donate_argnums=(0,), out_shardings=NamedSharding(mesh, P()))


# --------------------------------------------------------------------------- the run


def logits_fn_for(graphdef):
    def logits(params, x):
        return nnx.merge(graphdef, params)(x, train=False)

    return logits


def init_model(recipe: Recipe, seed: int) -> NIN | ConvNet:
    return build_model(recipe.model, rngs=nnx.Rngs(params=jax.random.fold_in(jax.random.key(seed), 0)))


@dataclasses.dataclass
class _Program:
    """What compiles once per recipe and is shared by its seeds."""

    tx: optax.GradientTransformation
    eval_fn: Callable
    steps: dict[tuple[int, Mesh], Callable]  # by (steps per call, mesh)


@functools.lru_cache(maxsize=8)
def _program(recipe: Recipe) -> _Program:
    model = init_model(recipe, 0)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(recipe, params, model.classifier_path())
    return _Program(tx, make_eval_fn(logits_fn_for(graphdef)), {})


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
) -> RunResult:
    """Train one seed of ``recipe`` on ``data``; write the run folder; return the final test error.

    Resumes from the run folder's last checkpoint of the same recipe, if there is one. ``run_info``
    (e.g. the fitted preprocessing's path and sha256) is stored in every checkpoint."""
    (result,) = train_and_evaluate_seeds(recipe, data, [Path(workdir)], [seed], progress, eval_every, chunk_steps, checkpoint_every_s, run_info)
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
) -> list[RunResult]:
    """Train K seeds at once, one vmapped program (K = 1: the plain step, no vmap); each seed
    writes its own run folder exactly as a run of that seed alone would, and gets the same numbers.

    The K seeds share one checkpoint of their stacked state, in the first seed's folder under a
    name that lists the seeds: re-running the same K seeds resumes it (a finished group is not
    trained again); the same seeds run one at a time start afresh."""
    from nin_repro.checkpoint import Checkpointer

    if len(workdirs) != len(seeds) or not seeds:
        raise ValueError(f"one run folder per seed: {len(workdirs)} folders for seeds {seeds}")
    if len(seeds) > 1 and recipe.schedule == "plateau":
        # The plateau rule decides each seed's LR drops and its last epoch from its own training
        # accuracy; the seeds would drift apart in length. Run them one at a time.
        raise UsageError("the plateau schedule trains one seed at a time: run the seeds separately (--no-parallel-seeds)")
    with Checkpointer(Path(workdirs[0]), recipe, every_s=checkpoint_every_s, seeds=seeds) as ckpt:
        return _train(recipe, data, [Path(w) for w in workdirs], list(seeds), progress, eval_every, chunk_steps, ckpt, run_info or {})


def _train(recipe, data, workdirs, seeds, progress, eval_every, chunk_steps, ckpt, run_info) -> list[RunResult]:
    for workdir in workdirs:
        workdir.mkdir(parents=True, exist_ok=True)
    n_train = len(data.x_train)
    if recipe.batch_size > n_train:
        raise UsageError(f"batch size {recipe.batch_size} is larger than the training set ({n_train} images): pass a smaller --batch-size")
    steps_per_epoch = n_train // recipe.batch_size  # each epoch a fresh permutation; the remainder waits for the next
    total_steps = recipe.total_steps(steps_per_epoch)
    max_epochs = math.ceil(total_steps / steps_per_epoch)
    chunk = min(chunk_steps or default_chunk_steps(steps_per_epoch), steps_per_epoch)

    K = len(seeds)
    over_seeds = K > 1
    who = f"seed {seeds[0]}" if K == 1 else "seeds " + ", ".join(map(str, seeds))

    def join(per_seed: list):
        """One tree per seed -> what the step takes: the tree itself for one seed, stacked on a leading K axis for several."""
        return jax.tree.map(lambda *a: jnp.stack(a), *per_seed) if over_seeds else per_seed[0]

    def seed_part(tree, i: int):
        return jax.tree.map(lambda a: a[i], tree) if over_seeds else tree

    program = _program(recipe)
    tx, eval_fn = program.tx, program.eval_fn
    graphdef = None
    states = []
    for seed in seeds:
        graphdef, params = nnx.split(init_model(recipe, seed), nnx.Param)
        states.append((params, tx.init(params)))
    state = join(states)
    keys = [jax.random.key(seed) for seed in seeds]

    mesh = data_mesh(recipe.batch_size)
    on_mesh = NamedSharding(mesh, P())  # the dataset and the training state on every device
    x_train, y_train, keys = jax.device_put((data.x_train, data.y_train, keys), on_mesh)
    key = join(keys)
    test_set = EvalSet.build(data.x_test, data.y_test, recipe.eval_batch_size)
    compiled = program.steps

    plateau = _Plateau(recipe) if recipe.schedule == "plateau" else None  # K = 1 (train_and_evaluate_seeds)
    metrics_paths = [workdir / "metrics.jsonl" for workdir in workdirs]
    # Where the run stands; a checkpoint stores exactly this (plus the training state). The
    # running sums and the dead-layer count are per seed.
    pos_state = {"epoch": 0, "pos": 0, "step": 0, "epoch_loss": [0.0] * K, "epoch_correct": [0] * K, "epoch_seen": 0, "dead_run": [0] * K, "train_time": 0.0, "wall": 0.0}
    resumed = ckpt.restore(state)
    if resumed is not None:
        state, meta = resumed
        pos_state.update(meta["position"])
        for name in ("epoch_loss", "epoch_correct", "dead_run"):  # a one-seed checkpoint stores scalars
            pos_state[name] = np.broadcast_to(pos_state[name], (K,)).tolist()
        if plateau:
            plateau.__dict__.update(meta["plateau"])
        done_epochs = pos_state["epoch"]
        for path in metrics_paths:
            kept = path.read_text().splitlines()[:done_epochs] if path.exists() else []
            path.write_text("".join(line + "\n" for line in kept))
    else:
        for path in metrics_paths:
            path.write_text("")
    if progress:
        progress.start(total_steps, who + (f" (resumed at step {pos_state['step']})" if resumed else ""))

    def checkpoint(force: bool) -> None:
        # The RNG needs no state: every key is fold_in(key(seed), epoch or step).
        seed_meta = {"seed": seeds[0]} if K == 1 else {"seed": seeds[0], "seeds": seeds}
        meta = {**seed_meta, "run": run_info, "position": {**pos_state, "wall": time.perf_counter() - t_start}, "plateau": {k: v for k, v in vars(plateau).items() if k != "r"} if plateau else {}}
        ckpt.save(pos_state["step"], state, meta, force=force)

    step, train_time = pos_state["step"], pos_state["train_time"]
    dead_run_K = list(pos_state["dead_run"])
    t_start = time.perf_counter() - pos_state["wall"]
    ln_c = math.log(data.num_classes)
    lrs = np.array([recipe.base_lr], np.float32)
    state = jax.device_put(state, on_mesh)
    for epoch in range(pos_state["epoch"], max_epochs):
        epoch_loss_K, epoch_correct_K = np.array(pos_state["epoch_loss"], np.float64), np.array(pos_state["epoch_correct"], np.int64)
        epoch_seen, pos = pos_state["epoch_seen"], pos_state["pos"]
        # Each seed its own order, as it would have alone; the images themselves are shared.
        perm = join([epoch_permutation(k_, epoch, n_train) for k_ in keys])
        while pos < steps_per_epoch and step < total_steps:
            k = min(chunk, steps_per_epoch - pos, total_steps - step)
            if (k, mesh, over_seeds) not in compiled:
                compiled[k, mesh, over_seeds] = make_train_steps(graphdef, tx, recipe, k, mesh, over_seeds=over_seeds)
            factor = plateau.factor if plateau else None
            lrs = np.array(
                [recipe.base_lr * (factor * recipe.lr_factor(s, steps_per_epoch) if plateau else recipe.lr_factor(s, steps_per_epoch)) for s in range(step, step + k)],
                np.float32,
            )
            t0 = time.perf_counter()
            try:
                # Explicit copies of the chunk's few scalars; the guard proves nothing else moves.
                args = jax.device_put((perm, key, np.int32(step), np.int32(pos), lrs), on_mesh)
                with jax.transfer_guard("disallow"):
                    state, m = compiled[k, mesh, over_seeds](state, x_train, y_train, *args)
                losses_Kk = np.asarray(m["loss"]).reshape(K, k)
            except Exception as e:  # XLA's runtime error type moved between jax versions
                if "RESOURCE_EXHAUSTED" not in str(e):
                    raise
                raise TrainingFailed(
                    f"{who}: the device ran out of memory at batch size {recipe.batch_size} (step {step}); "
                    "pass a smaller --batch-size" + (" or train the seeds one at a time (--no-parallel-seeds)" if over_seeds else "")
                ) from None
            dt = time.perf_counter() - t0
            train_time += dt

            max_abs_logit_Kk = np.asarray(m["max_abs_logit"]).reshape(K, k)
            for s, seed in enumerate(seeds):
                bad = np.flatnonzero(~np.isfinite(losses_Kk[s]))
                if bad.size:
                    raise TrainingFailed(
                        f"seed {seed}: the loss became {losses_Kk[s, bad[0]]} at step {step + int(bad[0])}; the run is stopped "
                        "(try a smaller learning rate with --set base_lr=..., or another seed)"
                    )
                for i, zero in enumerate(max_abs_logit_Kk[s] == 0):
                    dead_run_K[s] = dead_run_K[s] + 1 if zero else 0
                    if dead_run_K[s] >= recipe.dead_steps:
                        raise TrainingFailed(
                            f"seed {seed}: the last layer died at step {step + i}: every class score is 0 for "
                            f"{recipe.dead_steps} steps, the loss sits at ln({data.num_classes}) = {ln_c:.4f} and no gradient "
                            "flows (a known failure of the paper's init with LR 0.1); try another --seeds value or our "
                            "warm-up departure, --warmup-epochs 5"
                        )
            epoch_loss_K += losses_Kk.sum(axis=1)
            epoch_correct_K += np.asarray(m["correct"]).reshape(K, k).sum(axis=1)
            epoch_seen += k
            step += k
            pos += k
            if progress:
                progress.update(step, epoch=step / steps_per_epoch, loss=float(losses_Kk[:, -1].mean()), img_per_s=K * k * recipe.batch_size / dt)
            if ckpt.stop_requested:
                pos_state.update(epoch=epoch, pos=pos, step=step, epoch_loss=epoch_loss_K.tolist(), epoch_correct=epoch_correct_K.tolist(), epoch_seen=epoch_seen, dead_run=dead_run_K, train_time=train_time)
                checkpoint(force=True)
                raise Interrupted(f"{who}: stopped by {ckpt.stop_requested} at step {step}; checkpoint saved, run the same command again to resume")

        train_acc_K = epoch_correct_K / (epoch_seen * recipe.batch_size)
        last = step >= total_steps
        if plateau:
            plateau.observe(float(train_acc_K[0]))
            last = last or plateau.done
        evaluate_now = last or (eval_every and (epoch + 1) % eval_every == 0)
        for s, seed in enumerate(seeds):
            record = {
                "epoch": epoch + 1,
                "step": step,
                "lr": float(lrs[-1]),
                "train_loss": float(epoch_loss_K[s]) / epoch_seen,
                "train_error": 1.0 - float(train_acc_K[s]),
                "wall_s": round(time.perf_counter() - t_start, 3),
            }
            if evaluate_now:
                ev = evaluate(eval_fn, seed_part(state[0], s), test_set)
                record.update(test_error=ev.error, test_loss=ev.loss)
            with metrics_paths[s].open("a") as f:
                f.write(json.dumps(record) + "\n")
            if progress:
                progress.epoch_end(record if K == 1 else {**record, "seed": seed})
        pos_state.update(epoch=epoch + 1, pos=0, step=step, epoch_loss=[0.0] * K, epoch_correct=[0] * K, epoch_seen=0, dead_run=dead_run_K, train_time=train_time)
        checkpoint(force=last)
        if last:
            break

    wall = time.perf_counter() - t_start  # of the whole group
    results = []
    for s, seed in enumerate(seeds):
        params = seed_part(state[0], s)
        final = evaluate(eval_fn, params, test_set)
        save_params(workdirs[s] / "params", params)
        results.append(
            RunResult(
                seed=seed,
                test_error=final.error,
                test_loss=final.loss,
                num_test=final.num_examples,
                steps=step,
                epochs=step / steps_per_epoch,
                wall_s=wall / K,  # each seed's share of the group's time: sums over seeds stay the real total
                # Each model's own rate: the group's summed rate is K times this.
                train_img_per_s=step * recipe.batch_size / train_time if train_time else 0.0,
                run_dir=str(workdirs[s]),
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

    model = init_model(recipe, 0)
    graphdef, params = nnx.split(model, nnx.Param)
    restored = ocp.StandardCheckpointer().restore(Path(path).resolve())
    nnx.replace_by_pure_dict(params, restored)
    return graphdef, params
