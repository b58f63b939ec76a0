"""`nin-repro bench`: training and evaluation throughput of a table's network on this device.

Synthetic data on the device, the real compiled training step (optimizer, dropout, augmentation
as the recipe says) and the real evaluation function. Compile time is reported separately;
timings synchronise with the device. FLOPs are counted from the layer shapes (docs/paper-notes.md, "Architecture"):
a training step costs about 3x the forward pass (forward + two backward matmuls per layer).

Two ceilings bound the training rate, both from the model config: compute (the device's dense
peak / FLOPs per image) and memory (HBM bandwidth / bytes per image). The bytes: every activation
value (the input and each conv and pool output) is touched ``TRAIN_ACCESSES`` times per training
step when the kernels are not fused across layers (written and read back in the forward pass; its
gradient written and read in the backward pass), ``EVAL_ACCESSES`` times per evaluation; weights
are negligible per image at batch >= 128. Each measured rate is reported as a % of the lower one.
For float32 the compute peak is TF32's where the device has it: JAX's default matmul precision on
NVIDIA GPUs uses TF32 for float32 convolutions.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from nin_repro import atomic
from nin_repro.errors import UsageError
from nin_repro.models import resolve_pool_grad
from nin_repro.provenance import provenance
from nin_repro.recipe import Recipe, load_experiment

# Dense peak TFLOP/s by device kind (vendor datasheets, SXM parts), for % of peak; float32 is TF32's
# tensor-core peak on NVIDIA parts that have one (JAX's default float32 matmul precision there).
PEAK_TFLOPS = {
    "NVIDIA H100 80GB HBM3": {"bfloat16": 989.0, "float32": 494.7},
    "NVIDIA H100": {"bfloat16": 989.0, "float32": 494.7},
    "NVIDIA H200": {"bfloat16": 989.0, "float32": 494.7},
    "NVIDIA A100-SXM4-80GB": {"bfloat16": 312.0, "float32": 156.0},
    "NVIDIA A100-SXM4-40GB": {"bfloat16": 312.0, "float32": 156.0},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
    "TPU v5 lite": {"bfloat16": 197.0, "float32": 197.0},
}
# HBM bandwidth, bytes/s (vendor datasheets).
HBM_BYTES_PER_S = {
    "NVIDIA H100 80GB HBM3": 3.35e12,
    "NVIDIA H100": 3.35e12,
    "NVIDIA H200": 4.8e12,
    "NVIDIA A100-SXM4-80GB": 2.04e12,
    "NVIDIA A100-SXM4-40GB": 1.56e12,
    "TPU v4": 1.2e12,
    "TPU v5 lite": 0.82e12,
}
TRAIN_ACCESSES, EVAL_ACCESSES = 4, 2


@dataclasses.dataclass(frozen=True)
class Roofline:
    """What the device allows for one image of a network: FLOPs, HBM bytes, and the two ceilings."""

    flops: float
    bytes: float
    compute_img_s: float | None  # None: peak unknown for this device
    memory_img_s: float | None  # None: bandwidth unknown

    @property
    def ceiling_img_s(self) -> float | None:
        known = [c for c in (self.compute_img_s, self.memory_img_s) if c]
        return min(known) if known else None

    @property
    def bound(self) -> str:
        if not (self.compute_img_s and self.memory_img_s):
            return "unknown"
        return "memory" if self.memory_img_s < self.compute_img_s else "compute"


def roofline(model, what: str, dtype: str, peak_tflops: float | None, hbm_bytes_per_s: float | None) -> Roofline:
    macs = model.forward_macs()
    flops = (3 if what == "train" else 1) * 2 * macs
    nbytes = (TRAIN_ACCESSES if what == "train" else EVAL_ACCESSES) * model.activation_elements() * jnp.dtype(dtype).itemsize
    return Roofline(flops, nbytes, peak_tflops * 1e12 / flops if peak_tflops else None, hbm_bytes_per_s / nbytes if hbm_bytes_per_s else None)


@dataclasses.dataclass(frozen=True)
class BenchResult:
    what: str  # "train" | "eval"
    dtype: str
    batch_size: int
    steps: int
    compile_s: float
    ms_per_step: float
    img_per_s: float
    tflops: float
    pct_of_peak: float | None
    models: int = 1  # seeds trained at once by one vmapped step; img/s and TFLOP/s are summed over them
    img_per_s_per_model: float = 0.0
    hbm_gb_s: float = 0.0  # the HBM traffic the measured rate implies (the model's bytes per image)
    compute_ceiling_img_s: float | None = None
    memory_ceiling_img_s: float | None = None
    pct_of_ceiling: float | None = None  # of the lower ceiling
    bound: str = "unknown"  # which ceiling is lower: "compute" | "memory"
    steps_per_call: int = 1  # training steps in one compiled call (a scan), as training runs them
    rng_impl: str = "threefry2x32"  # the random generator (dropout masks, augmentation)
    pool_grad: str = "mask"  # the max pools' gradient ("auto" resolved: models.resolve_pool_grad)


def _time(fn, steps: int, warmup: bool = True) -> float:
    if warmup:
        jax.block_until_ready(fn())
    t0 = time.perf_counter()
    for _ in range(steps):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / steps


def bench_recipe(
    recipe: Recipe,
    *,
    batch_size: int,
    dtype: str,
    steps: int,
    peak_tflops: float | None = None,
    seeds: int = 1,
    hbm_gb_s: float | None = None,
    steps_per_call: int | None = None,
    rng_impl: str | None = None,
    pool_grad: str | None = None,
    evaluate: bool = True,
    warmup: bool = True,
) -> list[BenchResult]:
    """Time ``steps`` training steps and ``steps`` evaluation batches of ``recipe``'s network.

    The training steps run as training runs them: ``steps_per_call`` steps per compiled call
    (default ``train.default_chunk_steps(steps)``: all ``steps`` in one scanned call on a GPU/TPU,
    as an epoch is there; one step per call on a CPU). ``seeds=K``: the call trains K models at
    once (one vmapped program; parameters and optimizer states stacked, each seed its own key, the
    data shared). ``rng_impl``: the recipe's random generator replaced (threefry vs rbg: what the
    dropout masks cost); ``pool_grad``: the max pools' gradient ("auto", "xla" or "mask", see models.caffe_pool).
    ``warmup=False``: the training call is compiled ahead (timed apart) and its first runs are the
    timed ones, no untimed run before them; with ``evaluate=False`` (the training step only) this is
    what a dry run's estimate needs: a full network's step takes seconds on a CPU."""
    recipe, train_once, eval_once, calls, per_call, compiled_s = bench_programs(
        recipe, batch_size=batch_size, dtype=dtype, steps=steps, seeds=seeds, steps_per_call=steps_per_call, rng_impl=rng_impl, pool_grad=pool_grad, warmup=warmup
    )
    device = jax.devices()[0]
    peak = peak_tflops or PEAK_TFLOPS.get(device.device_kind, {}).get(jnp.dtype(dtype).name)
    bandwidth = hbm_gb_s * 1e9 if hbm_gb_s else HBM_BYTES_PER_S.get(device.device_kind)
    measured = (("train", train_once, seeds, calls, per_call, compiled_s), ("eval", eval_once, 1, steps, 1, None))[: 2 if evaluate else 1]
    return [
        _measure(recipe, what, fn, models=models, calls=reps, per_call=per, steps=steps, peak=peak, bandwidth=bandwidth, compiled_s=done)
        for what, fn, models, reps, per, done in measured
    ]


def bench_programs(
    recipe: Recipe,
    *,
    batch_size: int,
    dtype: str,
    steps: int,
    seeds: int = 1,
    steps_per_call: int | None = None,
    rng_impl: str | None = None,
    pool_grad: str | None = None,
    warmup: bool = True,
):
    """What bench times, ready to call: ``(recipe as timed, train_once, eval_once, calls, steps per
    call, compile seconds)``. ``train_once()`` runs one compiled training call (``steps per call``
    steps of ``seeds`` models) and ``eval_once()`` evaluates one batch; both return an array to wait
    on. The first call compiles, unless ``warmup=False``: then the training call is compiled here and
    its compile time returned (else None)."""
    from flax import nnx

    from nin_repro.evaluate import make_eval_fn
    from nin_repro.train import default_chunk_steps, epoch_permutation, init_model, logits_fn_for, make_optimizer, make_train_steps, run_key

    # Only NIN has a pool_grad option (the CNN and the baselines' networks have none).
    model = dataclasses.replace(recipe.model, dtype=dtype, **({"pool_grad": pool_grad} if pool_grad and hasattr(recipe.model, "pool_grad") else {}))
    recipe = dataclasses.replace(recipe, batch_size=batch_size, model=model, rng_impl=rng_impl or recipe.rng_impl)
    per_call = min(steps_per_call or default_chunk_steps(steps), steps)
    calls = max(1, steps // per_call)
    h, w = recipe.model.input_hw
    n = batch_size * max(4, per_call)
    key = run_key(0, 0, recipe.rng_impl)
    x = jax.random.normal(key, (n, h, w, recipe.model.in_channels), jnp.float32)
    y = jax.random.randint(key, (n,), 0, recipe.model.num_classes, jnp.int32)

    net = init_model(recipe, 0)  # once: a full network's initialisation takes seconds on a CPU
    graphdef, params = nnx.split(net, nnx.Param)
    tx = make_optimizer(recipe, params, net.classifier_path())
    state = [(params, tx.init(params))]
    keys = key
    if seeds > 1:
        stacked_params = [nnx.split(init_model(recipe, s), nnx.Param)[1] for s in range(seeds)]
        state = [jax.tree.map(lambda *a: jnp.stack(a), *((p, tx.init(p)) for p in stacked_params))]
        keys = jnp.stack([run_key(s, 0, recipe.rng_impl) for s in range(seeds)])
    train_steps = make_train_steps(graphdef, tx, recipe, per_call, n // batch_size, over_seeds=seeds > 1)
    perm = epoch_permutation(key, 0, n)
    lr_scale = jnp.float32(recipe.base_lr)

    compiled_s = None
    if not warmup:
        t0 = time.perf_counter()
        train_steps = train_steps.lower(state[0], x, y, perm, keys, 0, 0, lr_scale).compile()
        compiled_s = time.perf_counter() - t0

    def train_once():
        state[0], metrics = train_steps(state[0], x, y, perm, keys, 0, 0, lr_scale)
        return metrics["loss"]

    eval_fn = make_eval_fn(logits_fn_for(graphdef))
    xb = x[:batch_size].reshape(1, batch_size, h, w, -1)
    yb, mb = y[:batch_size].reshape(1, -1), jnp.ones((1, batch_size), bool)

    def eval_once():
        params = state[0][0] if seeds == 1 else jax.tree.map(lambda a: a[0], state[0][0])
        return eval_fn(params, xb, yb, mb)[0]

    return recipe, train_once, eval_once, calls, per_call, compiled_s


def _measure(
    recipe: Recipe, what: str, fn, *, models: int, calls: int, per_call: int, steps: int, peak: float | None, bandwidth: float | None, compiled_s: float | None = None
) -> BenchResult:
    """Compile and run ``fn`` once and once more, time ``calls`` more calls of ``per_call`` steps
    each, and put the rate beside the roofline of ``recipe``'s network. ``compiled_s``: ``fn`` was
    compiled ahead in that time; its first ``calls`` calls are timed."""
    dtype, batch_size = recipe.model.dtype, recipe.batch_size
    roof = roofline(recipe.model, what, dtype, peak, bandwidth)
    compile_s = compiled_s
    if compiled_s is None:
        t0 = time.perf_counter()
        jax.block_until_ready(fn())  # compile + first run
        compile_s = time.perf_counter() - t0
    dt = _time(fn, calls, warmup=compiled_s is None) / per_call  # per step
    ips = models * batch_size / dt
    tflops = ips * roof.flops / 1e12
    ceiling = roof.ceiling_img_s
    return BenchResult(
        what,
        dtype,
        batch_size,
        steps,
        compile_s,
        1e3 * dt,
        ips,
        tflops,
        100 * tflops / peak if peak else None,
        models,
        ips / models,
        hbm_gb_s=ips * roof.bytes / 1e9,
        compute_ceiling_img_s=roof.compute_img_s,
        memory_ceiling_img_s=roof.memory_img_s,
        pct_of_ceiling=100 * ips / ceiling if ceiling else None,
        bound=roof.bound,
        steps_per_call=per_call,
        rng_impl=recipe.rng_impl,
        pool_grad=resolve_pool_grad(getattr(recipe.model, "pool_grad", "xla")),
    )


def write_bench(results: list[BenchResult], path_md, table: str, prov: dict, comparisons: list = ()) -> None:
    lines = [
        f"# Benchmark: `{table}` network",
        "",
        f"Device: {prov['device']['kind']} ({prov['device']['platform']}); jax {prov['versions']['jax']}; commit `{prov['commit']}`; {prov['date']}.",
        "Synthetic data on the device; the compiled training call that training makes (SGD + dropout as the recipe): "
        f"{max(r.steps_per_call for r in results)} steps scanned in one call on a GPU/TPU (as an epoch is), one step per call on a CPU; "
        f"{results[0].steps} timed steps per configuration after a warm-up; FLOPs from layer shapes (train = 3 x forward). Compile time excluded from img/s. "
        "models > 1: that many seeds trained by one vmapped step; img/s and TFLOP/s summed over them.",
        "",
        "Ceilings per image from the model config: compute = dense peak / FLOPs, memory = HBM bandwidth / bytes "
        f"({TRAIN_ACCESSES} accesses per activation value per training step, {EVAL_ACCESSES} per evaluation; see nin_repro/bench.py); "
        "% of ceiling is of the lower one.",
        "",
        "| what | dtype | batch | models | rng | pool grad | steps/call | img/s | img/s per model | ms/step | TFLOP/s | % of peak | HBM GB/s "
        "| compute ceiling img/s | memory ceiling img/s | % of ceiling (bound) | compile (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def num(x, fmt=",.0f", none="n/a"):
        return format(x, fmt) if x is not None else none

    for r in results:
        pct = num(r.pct_of_peak, ".1f", "n/a (unknown device; pass --peak-tflops)")
        lines.append(
            f"| {r.what} | {r.dtype} | {r.batch_size} | {r.models} | {r.rng_impl} | {r.pool_grad} | {r.steps_per_call} | "
            f"{r.img_per_s:,.0f} | {r.img_per_s_per_model:,.0f} | {r.ms_per_step:.2f} | {r.tflops:.3f} | {pct} | "
            f"{r.hbm_gb_s:,.1f} | {num(r.compute_ceiling_img_s)} | {num(r.memory_ceiling_img_s, none='n/a (pass --hbm-gb-s)')} | "
            f"{num(r.pct_of_ceiling, '.1f')} ({r.bound}) | {r.compile_s:.1f} |"
        )
    base = next((r for r in results if r.what == "train"), None)
    if base:
        lines += ["", "Ratios against the first training row (same run):"]
        lines += [
            f"- {r.what} {r.dtype} batch {r.batch_size}{f' x {r.models} seeds' if r.models > 1 else ''}, {r.rng_impl}, pool grad {r.pool_grad}: {r.img_per_s / base.img_per_s:.2f}x"
            for r in results
        ]
    if comparisons:
        lines += ["", "Against a peer (same network, float32, steps interleaved with ours; median step; ratio = ours / peer's):"]
        lines += [f"- {c.line()}" for c in comparisons]
    atomic.write_text(path_md, "\n".join(lines) + "\n")
    peer_json = [{**dataclasses.asdict(c), "train_ratio": c.train_ratio, "eval_ratio": c.eval_ratio} for c in comparisons]
    atomic.write_json(path_md.with_suffix(".json"), {"table": table, "results": [dataclasses.asdict(r) for r in results], "peer": peer_json, "provenance": prov})


# XLA:CPU flags are left at jaxlib 0.10.2's defaults (but the training step's backend level,
# xla_options.REPEATED, chosen for compile time): none measured a clear gain (MNIST NIN, batch
# 128, 2 shared cores, ours / PyTorch's training img/s in the same process: defaults 2.25x,
# --xla_cpu_use_thunk_runtime=false 1.84x, --xla_cpu_use_onednn=true 2.19x, --xla_cpu_use_xnnpack=true
# 2.49x, within the load's noise). bf16 is for GPUs/TPUs: on XLA:CPU (AVX-512 with bf16) it measured slower than fp32 (MNIST NIN,
# batch 128, 2 shared cores, steps interleaved: training 96 vs 139 img/s, evaluation 440 vs 653).
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
# Timed steps per configuration. A CPU step of a full network takes seconds (20 of them took most of
# a first `nin-repro bench`: 140 of 176 s on 2 cores), so a few give its mean as well.
DEFAULT_STEPS = {"accelerator": 20, "cpu": 3}

# The columns of `nin-repro bench`'s terminal table; ``summary_rows`` gives its rows.
COLUMNS = ("what", "dtype", "batch", "models", "rng", "pool grad", "img/s", "per model", "ms/step", "TFLOP/s", "% peak", "ceiling img/s", "% ceiling", "compile s")


def bench_table(
    table: str,
    *,
    batch_sizes: list[int],
    dtypes: list[str],
    steps: int | None,
    seeds: list[int],
    rng_impls: list[str] = ("threefry2x32",),
    pool_grads: list[str] = ("auto",),
    peak_tflops: float | None = None,
    hbm_gb_s: float | None = None,
    results_dir: Path = Path("results"),
    peer: str | None = None,
    peer_rounds: int = 8,
    cache_dir: Path | None = None,
    row: str | None = None,
) -> tuple[list[BenchResult], Path, dict, list]:
    """`nin-repro bench`: time ``table``'s network for every dtype (fp32, bf16) x batch size x seeds
    and write ``results_dir/bench.md`` (and .json); the training rates of one model at a time go
    into ``cache_dir``'s step-rate cache (nin_repro.estimate). ``steps=None``: ``DEFAULT_STEPS``.
    ``peer="torch"``: also our float32 steps against the PyTorch peer's, interleaved, per batch size
    (nin_repro.peer). ``row``: that variant's network (default: the table's first). Returns the results, the markdown's path, the provenance and the peer comparisons."""
    from nin_repro import peer as peers

    if steps is None:
        steps = DEFAULT_STEPS["cpu" if jax.default_backend() == "cpu" else "accelerator"]
    if peer is not None:
        peers.check_peer(peer)
        if peer_rounds <= 0:
            raise UsageError("--peer-rounds must be positive")
    if steps <= 0 or any(b <= 0 for b in batch_sizes) or any(k <= 0 for k in seeds):
        raise UsageError("--steps, --batch-size and --seeds must be positive")
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise UsageError(f"unknown --dtype {unknown[0]!r}: choose fp32 or bf16")
    from nin_repro.recipe import RNG_IMPLS

    bad_rng = [r for r in rng_impls if r not in RNG_IMPLS]
    if bad_rng:
        raise UsageError(f"unknown --rng {bad_rng[0]!r}: choose one of {', '.join(RNG_IMPLS)}")
    from nin_repro.models import POOL_GRADS

    bad_pool = [p for p in pool_grads if p not in POOL_GRADS]
    if bad_pool:
        raise UsageError(f"unknown --pool-grad {bad_pool[0]!r}: choose one of {', '.join(POOL_GRADS)}")
    t = load_experiment(table).TABLE
    recipe = (t.variant(row) if row else t.variants[0]).recipe
    if row and peer is not None:
        raise UsageError("--peer builds the table's first network (NIN): drop --row")
    results = [
        r
        for d in dtypes
        for b in batch_sizes
        for k in seeds
        for rng in rng_impls
        for pool in pool_grads
        for r in bench_recipe(recipe, batch_size=b, dtype=DTYPES[d], steps=steps, peak_tflops=peak_tflops, seeds=k, hbm_gb_s=hbm_gb_s, rng_impl=rng, pool_grad=pool)
        if r.what == "train" or (k, rng, pool) == (seeds[0], rng_impls[0], pool_grads[0])  # evaluation depends on none of them
    ]
    comparisons = [peers.compare(table, recipe, batch_size=b, rounds=peer_rounds) for b in batch_sizes] if peer else []
    out = Path(results_dir) / "bench.md"
    prov = provenance()
    write_bench(results, out, f"{table}/{row}" if row else table, prov, comparisons)
    from nin_repro.estimate import remember_bench

    remember_bench(f"{table} --row {row}" if row else table, recipe, results, cache_dir)  # a dry run's estimates reuse these rates
    return results, out, prov, comparisons


def summary_rows(results: list[BenchResult]) -> list[list[str]]:
    """The rows of the terminal table, one per result, in ``COLUMNS`` order."""
    short = {v: k for k, v in DTYPES.items()}
    rows = []
    for r in results:
        pct = f"{r.pct_of_peak:.1f}" if r.pct_of_peak is not None else "n/a"
        ceiling = min(c for c in (r.compute_ceiling_img_s, r.memory_ceiling_img_s) if c) if (r.compute_ceiling_img_s or r.memory_ceiling_img_s) else None
        rows.append(
            [
                r.what,
                short.get(r.dtype, r.dtype),
                str(r.batch_size),
                str(r.models),
                r.rng_impl,
                r.pool_grad,
                f"{r.img_per_s:,.0f}",
                f"{r.img_per_s_per_model:,.0f}",
                f"{r.ms_per_step:.2f}",
                f"{r.tflops:.3f}",
                pct,
                f"{ceiling:,.0f} ({r.bound})" if ceiling else "n/a",
                f"{r.pct_of_ceiling:.1f}" if r.pct_of_ceiling else "n/a",
                f"{r.compile_s:.1f}",
            ]
        )
    return rows
