"""``python -m nin_repro.baselines_study``: do the baseline rows (conv. maxout + dropout, stochastic
pooling) learn on real images, on a CPU? (issue 19, section 5). Writes results/<name>.md + .json
with the commit it ran at.

Each run is a baseline table's row exactly as its experiment file has it (maxout: the authors'
yaml: init, LR, momentum, dropout, max norms, batch 128; stochastic pooling: the paper's recipe [S]
and ours) with two changes, both named in the record:
the data (the 4,000 / 1,000 shipped real MNIST digits: ``digits5k`` for the MNIST net,
``digits5k_rgb32``, the same digits as 32x32x3, for the SVHN- and CIFAR-shaped nets; each net's own
preprocessing fitted on them) and the length, ``max_epochs`` = the epochs run, so pylearn2's
schedules keep their own per-step (``ExponentialDecay``) and per-epoch (``MomentumAdjustor``,
``LinearDecayOverEpoch``) arithmetic, unscaled, on epochs of 31 steps (the SVHN net's second
phase, svhn2.yaml, is not run); a stochastic-pooling row's schedule (the paper's phases) is scaled
to the epochs run, as ``--epochs`` scales a table row. The stall checks watch but
never stop a run. Per seed: the mean training loss and the test error of every epoch, the first
epoch whose mean training loss is below ln 10 - 0.05 (and its last step), the final test error.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nin_repro import atomic
from nin_repro.baselines import MaxoutConfig
from nin_repro.figures import read_metrics
from nin_repro.provenance import provenance
from nin_repro.recipe import load_experiment
from nin_repro.reproduce import Options, load_table_data, prepare
from nin_repro.train import PreparedData, init_model, load_params, train_and_evaluate_seeds

TRAINED_BY = "trained_by.json"  # in each run folder: the provenance of the process that trained it
LEFT_LN_C_BY = 0.05  # as nin_repro.study: "learning" = epoch-mean training loss below ln C - this
# (key, table's experiment file, variant, dataset): the baseline rows of the NIN tables.
NETS = (
    ("mnist", "mnist", "maxout_dropout", "digits5k"),
    ("svhn", "svhn", "maxout_dropout", "digits5k_rgb32"),
    ("cifar10", "cifar10", "maxout_dropout", "digits5k_rgb32"),
    ("stochastic_mnist", "mnist", "stochastic_pooling", "digits5k"),
    ("stochastic_svhn", "svhn", "stochastic_pooling", "digits5k_rgb32"),
    ("stochastic_cifar10", "cifar10", "stochastic_pooling", "digits5k_rgb32"),
)


def real_digit_recipe(experiment: str, variant: str, dataset: str, epochs: int, seeds: tuple[int, ...]):
    """The table's recipe with only the data, the length and the seeds changed (see the module doc);
    a second phase (svhn2.yaml) is left out: the run is ``epochs`` epochs of the first."""
    recipe = load_experiment(experiment).TABLE.variant(variant).recipe
    if not isinstance(recipe.model, MaxoutConfig):  # stochastic pooling: its schedule scaled to the run
        return dataclasses.replace(recipe, dataset=dataset, epochs=float(epochs), seeds=seeds)
    return dataclasses.replace(recipe, dataset=dataset, max_epochs=epochs, epochs=None, seeds=seeds, pylearn2_phase2=())


def class_score_spread(recipe, data: PreparedData, seed: int, params_dir: Path | None = None) -> float:
    """How much the class scores depend on the image: the std over the test digits of each class's
    score minus its mean, at initialisation (``params_dir`` None) or for the saved parameters;
    evaluation mode (no dropout). Near 0 the loss sits at ln C whatever the class prior does."""
    model = init_model(recipe, seed)
    if params_dir is not None:
        graphdef, params = load_params(params_dir, recipe)
        model = nnx.merge(graphdef, params)
    logits = np.asarray(model(jnp.asarray(data.x_test[:1000]), train=False))
    return float(np.std(logits - logits.mean(axis=0)))


def seed_record(run, ln_c: float, recipe, data: PreparedData) -> dict:
    """One seed's history and when its loss left ln C (epoch resolution: the epoch-mean loss)."""
    records = read_metrics(run.run_dir)
    first = next((r for r in records if r["train_loss"] < ln_c - LEFT_LN_C_BY), None)
    return {
        "seed": run.seed,
        "train_loss": [round(r["train_loss"], 4) for r in records],
        "test_error_pct": [round(100 * r["test_error"], 2) if "test_error" in r else None for r in records],
        "first_epoch_below": first["epoch"] if first else None,
        "first_epoch_below_last_step": first["step"] if first else None,
        "final_test_error_pct": round(100 * run.test_error, 2),
        "steps": run.steps,
        "stalled_flag": run.stalled,
        "wall_s": round(run.wall_s, 1),
        "train_img_per_s": round(run.train_img_per_s, 1),
        "class_score_spread_init": class_score_spread(recipe, data, run.seed),
        "class_score_spread_final": class_score_spread(recipe, data, run.seed, Path(run.run_dir) / "params"),
    }


def run_net(key: str, epochs: int, seeds: tuple[int, ...], workdir: Path, eval_every: int) -> dict:
    """Train the net ``epochs`` epochs per seed (0: nothing, only its class-score spread at init)."""
    experiment, variant, dataset = next((e, v, d) for k, e, v, d in NETS if k == key)
    recipe = real_digit_recipe(experiment, variant, dataset, max(epochs, 1), seeds)
    data, _ = prepare(load_table_data(recipe, Options()), recipe, workdir)
    ln_c = math.log(data.num_classes)
    out = {
        "key": key,
        "recipe": f"experiments/{experiment}.py variant {variant}",
        "dataset": dataset,
        "preprocess": recipe.preprocess,
        "params": recipe.model.param_count(),
        "epochs": epochs,
        "steps_per_epoch": len(data.x_train) // recipe.batch_size,
        "eval_every": eval_every,
    }
    if epochs == 0:
        return out | {"class_score_spread_init": {seed: class_score_spread(recipe, data, seed) for seed in seeds}, "seeds": []}
    records = []
    for seed in seeds:  # one at a time (a CPU gains nothing from the vmapped seeds)
        run_dir = workdir / f"{key}_e{epochs}" / f"seed_{seed}"
        (run,) = train_and_evaluate_seeds(recipe, data, [run_dir], [seed], eval_every=eval_every, stop_on_stall=False)
        atomic.write_json(run_dir / TRAINED_BY, provenance())
        records.append(seed_record(run, ln_c, recipe, data))
    return out | {"seeds": records}


def render(record: dict) -> str:
    prov = record["provenance"]
    lines = [
        "# Baseline rows on the shipped real digits (issue 19, section 5)",
        "",
        "Each baseline row as its table's experiment file has it (maxout: the authors' pylearn2 yaml; stochastic pooling: the paper's recipe [S] "
        "and ours), on the 4,000 / 1,000 shipped real MNIST digits (`digits5k_rgb32`: the same digits as 32x32x3), for the epochs listed: only the data, "
        "the length and the seeds differ from the table's row (the SVHN net's svhn2.yaml phase is not run); pylearn2's schedules run unscaled, "
        "a stochastic-pooling row's schedule is scaled to the epochs run (module doc of `nin_repro/baselines_study.py`). "
        "Not a paper table. **Shortened runs: a few epochs of 4,000 digits, not the row's length or data.**",
        "",
        f"Command: `{record['command']}`; commit `{prov.get('commit', '?')}`, device {prov.get('device', '?')}, {prov.get('date', '?')}.",
        "",
        "| net | params | data | epochs x steps | seed | first epoch with mean train loss < ln 10 − 0.05 (its last step) | test error % by epoch "
        "| final test error % | class-score spread: init → end | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for net in record["nets"]:
        for s in net["seeds"]:
            first = "never" if s["first_epoch_below"] is None else f"{s['first_epoch_below']} ({s['first_epoch_below_last_step']})"
            errs = ", ".join("·" if e is None else f"{e:g}" for e in s["test_error_pct"])
            lines.append(
                f"| {net['key']} | {net['params']:,} | {net['dataset']} | {net['epochs']} x {net['steps_per_epoch']} | {s['seed']} | {first} | {errs} | "
                f"{s['final_test_error_pct']:g} | {s['class_score_spread_init']:.2e} → {s['class_score_spread_final']:.2e} | {s['wall_s']:g} |"
            )
    for net in record["nets"]:
        if net["epochs"] == 0:
            spreads = ", ".join(f"seed {k}: {v:.2e}" for k, v in net["class_score_spread_init"].items())
            lines.append(f"| {net['key']} | {net['params']:,} | {net['dataset']} | 0 (not trained) | | | | | {spreads} at init | |")
    lines += [
        "",
        "Class-score spread: the std over the 1,000 test digits of each class's score minus its mean over them (evaluation mode), "
        "at initialisation and for the final parameters; the loss cannot leave ln 10 while it is far below 1.",
        "",
        "Training loss by epoch (ln 10 = 2.3026):",
        "",
    ]
    for net in record["nets"]:
        for s in net["seeds"]:
            lines.append(f"- {net['key']} seed {s['seed']}: {', '.join(f'{v:.4f}' for v in s['train_loss'])}")
    return "\n".join(lines) + "\n"


def parse_seeds(text: str) -> tuple[int, ...] | None:
    """``K`` means seeds 0..K-1 (K >= 1); ``a,b,...`` those seeds; None if neither."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        return None
    if len(parts) == 1:
        return tuple(range(int(parts[0]))) or None
    return tuple(dict.fromkeys(int(p) for p in parts))


def main(argv: list[str] | None = None) -> tuple[Path, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", action="append", required=True, help=f"KEY=EPOCHS, e.g. mnist=30 (repeatable; keys: {', '.join(k for k, *_ in NETS)})")
    parser.add_argument("--seeds", default="3", help="K: seeds 0..K-1; or a list, e.g. 1,2 (to add seeds to an earlier run)")
    parser.add_argument("--eval-every", type=int, default=1, help="test error every N epochs (0: the last only)")
    parser.add_argument("--name", default="baselines-real-digits", help="results file stem")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--workdir", type=Path, default=Path("runs/baselines-study"))
    args = parser.parse_args(argv)
    started, nets = time.perf_counter(), []
    seeds = parse_seeds(args.seeds)
    if seeds is None:
        parser.error(f"--seeds {args.seeds}: expected a count K (seeds 0..K-1) or a comma list of seeds, e.g. 1,2")
    for item in args.net:
        key, _, epochs = item.partition("=")
        if key not in {k for k, *_ in NETS} or not epochs.isdigit():
            parser.error(f"--net {item}: expected KEY=EPOCHS (0: the spread at init only) with KEY one of {', '.join(k for k, *_ in NETS)}")
        nets.append(run_net(key, int(epochs), seeds, args.workdir, args.eval_every))
    argv_text = " ".join(f"--net {n}" for n in args.net) + f" --seeds {args.seeds} --eval-every {args.eval_every} --name {args.name}"
    command = f"PYTHONPATH=. python -m nin_repro.baselines_study {argv_text}"
    what = "the baseline rows of the NIN tables (maxout: the authors' yamls; stochastic pooling) on the 4,000 / 1,000 shipped real digits, shortened runs"
    record = {"study": args.name, "what": what, "command": command, "nets": nets, "wall_s": round(time.perf_counter() - started, 1), "provenance": provenance()}
    md, js = args.results_dir / f"{args.name}.md", args.results_dir / f"{args.name}.json"
    atomic.write_json(js, record)
    atomic.write_text(md, render(record))
    print(f"wrote {md} and {js}")
    return md, js


if __name__ == "__main__":
    main()
