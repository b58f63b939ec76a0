"""Explore which input preprocessing / small recipe change lets the paper's MNIST NIN recipe
learn on 4,000 real MNIST digits (digits5k), and characterise stalls (dead last layer).

8 seeds vmapped per variant, one compiled program per epoch (lax.scan over steps).
Usage: PYTHONPATH=. python scratch_explore/explore.py [--seeds 8 --epochs 10 --subset 0 --out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nin_repro.data.digits import load_demo_digits
from nin_repro.models import build_model
from nin_repro.recipe import load_experiment
from nin_repro.train import make_optimizer

LN10 = math.log(10.0)


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------- preprocessing


def preprocess(name, xtr_u8, xte_u8):
    xtr = xtr_u8.astype(np.float32)
    xte = xte_u8.astype(np.float32)
    if name == "scale01":
        return xtr / 255.0, xte / 255.0
    if name == "meansub01":
        m = (xtr / 255.0).mean(axis=0, keepdims=True)
        return xtr / 255.0 - m, xte / 255.0 - m
    if name == "meansub255":
        m = xtr.mean(axis=0, keepdims=True)
        return xtr - m, xte - m
    if name == "gcn":
        def g(x):
            x = x / 255.0
            x = x - x.mean(axis=(1, 2, 3), keepdims=True)
            rms = np.sqrt((x**2).mean(axis=(1, 2, 3), keepdims=True))
            return x / np.maximum(rms, 1e-8)
        return g(xtr), g(xte)
    if name == "standardize":
        a, b = xtr / 255.0, xte / 255.0
        m, s = a.mean(), a.std()
        return (a - m) / s, (b - m) / s
    raise ValueError(name)


# ----------------------------------------------------------------------------- variants


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    inp: str
    lr: str = "const"  # const | warmup | lr001
    init: str = "paper"  # paper | cccp6_0005 | he
    final_relu: bool = True


def variants():
    vs = [Variant(i, i) for i in ("scale01", "meansub01", "meansub255", "gcn", "standardize")]
    for inp in ("meansub255", "scale01"):
        vs += [
            Variant(f"{inp}+warmup", inp, lr="warmup"),
            Variant(f"{inp}+lr001", inp, lr="lr001"),
            Variant(f"{inp}+cccp6std0.005", inp, init="cccp6_0005"),
            Variant(f"{inp}+he", inp, init="he"),
            Variant(f"{inp}+nofinalrelu", inp, final_relu=False),
        ]
    return vs


def model_config(base, v: Variant):
    cfg = base
    if v.init == "he":
        cfg = cfg.with_he_init(final_relu=True)
    elif v.init == "cccp6_0005":
        b = cfg.blocks[-1]
        s = b.init_std
        cfg = dataclasses.replace(cfg, blocks=cfg.blocks[:-1] + (dataclasses.replace(b, init_std=(s[0], s[1], 0.005)),))
    if not v.final_relu:
        cfg = dataclasses.replace(cfg, final_relu=False)
    return cfg


def lr_array(v: Variant, total_steps, steps_per_epoch, base_lr):
    s = np.arange(total_steps)
    lr = np.full(total_steps, base_lr, np.float32)
    if v.lr == "warmup":
        lr = np.where(s < steps_per_epoch, base_lr * (s + 1) / steps_per_epoch, base_lr).astype(np.float32)
    elif v.lr == "lr001":
        lr = np.where(s < steps_per_epoch, 0.01, base_lr).astype(np.float32)
    return lr


def init_model(cfg, seed):
    return build_model(cfg, rngs=nnx.Rngs(params=jax.random.fold_in(jax.random.key(seed), 0)))


# ----------------------------------------------------------------------------- compiled fns

_FN_CACHE = {}


def get_fns(final_relu, graphdef, tx, batch, steps_per_epoch, num_train):
    key = final_relu
    if key in _FN_CACHE:
        return _FN_CACHE[key]

    def loss_fn(params, x, y, k):
        model = nnx.merge(graphdef, params)
        logits = model(x, train=True, rngs=nnx.Rngs(dropout=k))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, logits

    def step(params, opt_state, x, y, k, lr):
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, k)
        opt_state.hyperparams["learning_rate"] = lr
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        dead = jnp.all(logits == 0.0, axis=0)  # (K,): class logit exactly 0 for every example
        return params, opt_state, loss, dead

    vstep = jax.vmap(step, in_axes=(0, 0, 0, 0, 0, None))

    @jax.jit
    def run_epoch(params_S, opt_S, x_train, y_train, seed_keys_S, epoch_idx, lrs_T):
        perms_SN = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(jax.random.fold_in(k, 1), epoch_idx), num_train))(seed_keys_S)

        def body(carry, t):
            params_S, opt_S = carry
            gstep = epoch_idx * steps_per_epoch + t
            idx_SB = jax.lax.dynamic_slice_in_dim(perms_SN, t * batch, batch, axis=1)
            x_S, y_S = x_train[idx_SB], y_train[idx_SB]
            keys_S = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, 2), gstep))(seed_keys_S)
            params_S, opt_S, loss_S, dead_SK = vstep(params_S, opt_S, x_S, y_S, keys_S, lrs_T[t])
            return (params_S, opt_S), (loss_S, dead_SK)

        (params_S, opt_S), (loss_TS, dead_TSK) = jax.lax.scan(body, (params_S, opt_S), jnp.arange(steps_per_epoch))
        return params_S, opt_S, loss_TS, dead_TSK

    @jax.jit
    def evaluate(params_S, x_test, y_test):
        def one(params):
            logits = nnx.merge(graphdef, params)(x_test, train=False)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_test).mean()
            err = jnp.mean(jnp.argmax(logits, -1) != y_test)
            return err, loss

        return jax.vmap(one)(params_S)

    _FN_CACHE[key] = (run_epoch, evaluate)
    return run_epoch, evaluate


# ----------------------------------------------------------------------------- analysis


def longest_run(b):
    best = cur = 0
    for v in b:
        cur = cur + 1 if v else 0
        best = max(best, cur)
    return best


def analyse_seed(loss_T, dead_TK, epoch_loss, test_err, steps_per_epoch):
    ndead_T = dead_TK.sum(axis=1)
    max_consec = max(longest_run(dead_TK[:, k]) for k in range(dead_TK.shape[1]))
    max_dead = int(ndead_T.max())
    first_max = int(np.argmax(ndead_T == max_dead)) if max_dead > 0 else -1
    # how long the max-dead state lasted from its first occurrence
    run_at_max = 0
    if max_dead > 0:
        for v in ndead_T[first_max:]:
            if v >= max_dead:
                run_at_max += 1
            else:
                break
    stalled = bool(max_consec >= 25 or abs(epoch_loss[-1] - LN10) < 1e-3)
    first_learn = next((i + 1 for i, l in enumerate(epoch_loss) if l < LN10 - 0.05), None)
    return dict(
        stalled=stalled,
        first_learn_epoch=first_learn,
        final_test_err=float(test_err[-1]) * 100,
        max_consec_dead=int(max_consec),
        max_dead=max_dead,
        first_step_max_dead=first_max,
        steps_at_max_dead=run_at_max,
        final_dead=int(ndead_T[-1]),
        final_train_loss=float(epoch_loss[-1]),
    )


# ----------------------------------------------------------------------------- signal scale


def signal_scale(model, x_B):
    cfg = model.config
    out = {"input": float(jnp.std(x_B))}
    h = jnp.asarray(x_B)
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        h = block(h, final_relu=cfg.final_relu or i != last, train=False, rngs=None)
        out[f"block{i + 1}"] = float(jnp.std(h))
    logits = h.mean(axis=(1, 2))
    out["logits"] = float(jnp.std(logits))
    out["logit_absmean"] = float(jnp.mean(jnp.abs(logits)))
    out["frac_logit0"] = float(jnp.mean(logits == 0.0))
    return out


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--subset", type=int, default=0, help="use only the first N training images (0 = all)")
    ap.add_argument("--test-subset", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated variant names")
    ap.add_argument("--out", default=os.environ.get("OUT", "scratch_explore/out"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log(f"jax {jax.__version__} backend={jax.default_backend()} devices={jax.devices()}")

    recipe = load_experiment("mnist").RECIPE
    base_cfg = recipe.model
    batch = recipe.batch_size
    ds = load_demo_digits()
    xtr_u8, ytr, xte_u8, yte = ds.x_train, ds.y_train.astype(np.int32), ds.x_test, ds.y_test.astype(np.int32)
    if args.subset:
        xtr_u8, ytr = xtr_u8[: args.subset], ytr[: args.subset]
    if args.test_subset:
        xte_u8, yte = xte_u8[: args.test_subset], yte[: args.test_subset]
    N = len(xtr_u8)
    spe = N // batch
    T = spe * args.epochs
    S = args.seeds
    log(f"train {N} test {len(xte_u8)} batch {batch} steps/epoch {spe} epochs {args.epochs} seeds {S} base_lr {recipe.base_lr}")

    vs = variants()
    if args.only:
        keep = set(args.only.split(","))
        vs = [v for v in vs if v.name in keep]

    # graphdefs: one per final_relu value (param shapes are shared across inits)
    graphdefs = {}
    for fr in (True, False):
        cfg = dataclasses.replace(base_cfg, final_relu=fr)
        graphdefs[fr] = nnx.split(init_model(cfg, 0), nnx.Param)[0]
    m0 = init_model(base_cfg, 0)
    _, p0 = nnx.split(m0, nnx.Param)
    tx = make_optimizer(recipe, p0, m0.classifier_path())

    seed_keys_S = jax.vmap(jax.random.key)(jnp.arange(S))
    ytr_d, yte_d = jnp.asarray(ytr), jnp.asarray(yte)
    results_path = os.path.join(args.out, "results.jsonl")
    open(results_path, "w").close()

    # --- signal scale at init (seed 0, first 128 training images), every variant
    log("\n=== signal scale at init (seed 0, 128 train images, eval mode) ===")
    log(f"{'variant':28s} {'input':>8s} {'block1':>9s} {'block2':>9s} {'block3':>9s} {'logits':>9s} {'|logit|':>9s} {'logit==0':>8s}")
    scale_rows = {}
    for v in vs:
        # meansub/standardize need full-train stats
        xtr_full, _ = preprocess(v.inp, xtr_u8, xte_u8[:1])
        xb = xtr_full[:batch]
        model = init_model(model_config(base_cfg, v), 0)
        sc = signal_scale(model, xb)
        scale_rows[v.name] = sc
        log(f"{v.name:28s} {sc['input']:8.3f} {sc['block1']:9.4g} {sc['block2']:9.4g} {sc['block3']:9.4g} {sc['logits']:9.4g} {sc['logit_absmean']:9.4g} {sc['frac_logit0']:8.3f}")
    with open(os.path.join(args.out, "signal_scale.json"), "w") as f:
        json.dump(scale_rows, f, indent=1)

    summary = []
    for v in vs:
        t0 = time.time()
        cfg = model_config(base_cfg, v)
        xtr, xte = preprocess(v.inp, xtr_u8, xte_u8)
        xtr_d, xte_d = jnp.asarray(xtr), jnp.asarray(xte)
        params_list = [nnx.split(init_model(cfg, s), nnx.Param)[1] for s in range(S)]
        params_S = jax.tree.map(lambda *xs: jnp.stack(xs), *params_list)
        opt_S = jax.vmap(tx.init)(params_S)
        run_epoch, evaluate = get_fns(v.final_relu, graphdefs[v.final_relu], tx, batch, spe, N)
        lrs = jnp.asarray(lr_array(v, T, spe, recipe.base_lr))
        loss_all, dead_all, ep_loss, ep_err, ep_tloss, ep_time = [], [], [], [], [], []
        log(f"\n=== variant {v.name} ({dataclasses.asdict(v)}) ===")
        for e in range(args.epochs):
            te = time.time()
            params_S, opt_S, loss_TS, dead_TSK = run_epoch(params_S, opt_S, xtr_d, ytr_d, seed_keys_S, jnp.int32(e), lrs[e * spe : (e + 1) * spe])
            err_S, tloss_S = evaluate(params_S, xte_d, yte_d)
            loss_TS, dead_TSK, err_S, tloss_S = map(np.asarray, (loss_TS, dead_TSK, err_S, tloss_S))
            ep_time.append(time.time() - te)
            loss_all.append(loss_TS)
            dead_all.append(dead_TSK)
            ep_loss.append(loss_TS.mean(axis=0))
            ep_err.append(err_S)
            ep_tloss.append(tloss_S)
            ndead = dead_TSK.sum(-1)  # (T,S)
            log(
                f"  ep {e + 1:2d} {ep_time[-1]:6.2f}s  train loss " + " ".join(f"{l:.3f}" for l in ep_loss[-1])
                + " | test err% " + " ".join(f"{x * 100:5.1f}" for x in err_S)
                + " | max dead " + " ".join(str(int(d)) for d in ndead.max(0))
            )
        wall = time.time() - t0
        loss_TS = np.concatenate(loss_all)
        dead_TSK = np.concatenate(dead_all)
        ep_loss = np.stack(ep_loss)  # (E,S)
        ep_err = np.stack(ep_err)
        seeds = [analyse_seed(loss_TS[:, s], dead_TSK[:, s], ep_loss[:, s], ep_err[:, s], spe) for s in range(S)]
        log(f"  {'seed':>4s} {'stalled':>7s} {'1stLearnEp':>10s} {'testErr%':>8s} {'maxConsecDead':>13s} {'maxDead':>7s} {'@step':>5s} {'for':>4s} {'finalDead':>9s} {'finLoss':>7s}")
        for s, r in enumerate(seeds):
            log(f"  {s:4d} {str(r['stalled']):>7s} {str(r['first_learn_epoch']):>10s} {r['final_test_err']:8.2f} {r['max_consec_dead']:13d} {r['max_dead']:7d} {r['first_step_max_dead']:5d} {r['steps_at_max_dead']:4d} {r['final_dead']:9d} {r['final_train_loss']:7.3f}")
        errs = np.array([r["final_test_err"] for r in seeds])
        fl = [r["first_learn_epoch"] for r in seeds if r["first_learn_epoch"] is not None]
        row = dict(
            variant=v.name,
            spec=dataclasses.asdict(v),
            stalled=sum(r["stalled"] for r in seeds),
            learned=int((errs < 10).sum()),
            median_first_learn=float(np.median(fl)) if fl else None,
            n_never_learn=S - len(fl),
            err_mean=float(errs.mean()),
            err_std=float(errs.std()),
            wall_s=wall,
            first_epoch_s=ep_time[0],
            later_epoch_s=float(np.mean(ep_time[1:])) if len(ep_time) > 1 else None,
            seeds=seeds,
            epoch_train_loss=ep_loss.T.tolist(),
            epoch_test_err=ep_err.T.tolist(),
            dead_count_per_step=dead_TSK.sum(-1).T.tolist(),
            signal_scale=scale_rows[v.name],
        )
        summary.append(row)
        log(
            f"  SUMMARY {v.name}: stalled {row['stalled']}/{S}, learned {row['learned']}/{S}, median first-learn ep {row['median_first_learn']} "
            f"(never {row['n_never_learn']}), test err {row['err_mean']:.2f} +- {row['err_std']:.2f}%, wall {wall:.1f}s "
            f"(ep1 {ep_time[0]:.1f}s incl. compile, later {row['later_epoch_s'] or 0:.2f}s/ep)"
        )
        with open(results_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    log("\n=== overall summary ===")
    log(f"{'variant':28s} {'stalled':>7s} {'learned':>7s} {'medLearnEp':>10s} {'err mean+-std':>15s} {'wall':>6s}")
    for r in summary:
        log(f"{r['variant']:28s} {r['stalled']:>4d}/{S} {r['learned']:>4d}/{S} {str(r['median_first_learn']):>10s} {r['err_mean']:7.2f}+-{r['err_std']:5.2f} {r['wall_s']:6.1f}")


if __name__ == "__main__":
    main()
