"""The ``nin-repro`` command: one command per paper table, plus the offline demo.

Errors are one line on stderr with the exit code from the README: 0 ok, 1 run failed,
2 bad usage or bad input, 4 run folder in use by another process. No tracebacks.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional

import typer

from nin_repro.console import console, err_console, print_table, wide_help_off_a_terminal
from nin_repro.errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, NinError, SeedsStalled, TrainingFailed, UsageError
from nin_repro.registry import table_commands

app = typer.Typer(
    name="nin-repro",
    help="Reproduce the tables of Network In Network (Lin, Chen, Yan, ICLR 2014) with JAX/Flax.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DataDir = typer.Option(None, "--data-dir", help="Folder with the original dataset files (e.g. cifar-10-batches-py/).", show_default=False)
CacheDir = typer.Option(None, "--cache-dir", help="Where converted datasets are cached as .npz [default: $NIN_REPRO_CACHE or ~/.cache/nin-repro].", show_default=False)
ResultsDir = typer.Option(Path("results"), "--results-dir", help="Where the results tables are written.")
Workdir = typer.Option(Path("runs"), "--workdir", help="Where run folders (metrics, parameters, preprocessing) are written.")
Seeds = typer.Option(None, "--seeds", help="Number of seeds (0..K-1) [default: the recipe's, 3].", show_default=False)
Epochs = typer.Option(None, "--epochs", help="Train for N epochs; the LR schedule is scaled to fit. Shorter runs are marked in the table.", show_default=False)
BatchSize = typer.Option(None, "--batch-size", help="Batch size [default: the recipe's, 128].", show_default=False)
RecipeOpt = typer.Option(
    "paper",
    "--recipe",
    help="paper (the author's cuda-convnet schedule, 200+30+30 epochs), caffe (the model-zoo solver only), "
    "zoo (the whole Caffe model-zoo configuration: its solver and average pool2), plateau (the paper's text rule), "
    "protocol (the maxout rows of cifar10, svhn and mnist: the authors' validation phase with early stopping, then a retrain for its best epoch count, "
    "svhn2.yaml's resumption, or mnist's continuation to an NLL target).",
)
Download = typer.Option(True, "--download/--no-download", help="Download through tensorflow-datasets when the data is not cached or in --data-dir.")
Smoke = typer.Option(False, "--smoke", help="Synthetic data, tiny widths, a few steps: checks the pipeline in under a minute. Writes to results/smoke/.")
Warmup = typer.Option(None, "--warmup-epochs", help="[ours, departs from the paper] Linear LR warm-up over N epochs.", show_default=False)
SetOpt = typer.Option(None, "--set", help="Override any recipe field, e.g. --set base_lr=0.05 --set model.head=fc (recorded and marked in the row).", show_default=False)
CkptEvery = typer.Option(
    10.0, "--checkpoint-every", help="Minutes between checkpoints at epoch boundaries (also at the end and on SIGTERM/SIGINT). Re-running the same command resumes."
)
ParallelSeeds = typer.Option(
    None,
    "--parallel-seeds/--no-parallel-seeds",
    help="Train a variant's seeds at once, one vmapped program (default: on a GPU/TPU; off on a CPU, no faster there). Resuming needs the same choice as the interrupted run.",
    show_default=False,
)
Baselines = typer.Option(
    False,
    "--baselines/--no-baselines",
    help="Also train the table's baseline rows (conv. maxout + dropout, stochastic pooling) re-run in our harness; without it they show as not run.",
)
Rows = typer.Option(None, "--rows", help="Run only these rows (variants) of the table, e.g. --rows nin_dropout,nin_dropout_aug; the others show as not run.", show_default=False)
TfdsDir = typer.Option(None, "--tfds-data-dir", help="tensorflow-datasets data folder [default: $TFDS_DATA_DIR or ~/tensorflow_datasets].", show_default=False)


def _run_table(name: str, **kw) -> None:
    from nin_repro.progress import RichProgress
    from nin_repro.recipe import load_experiment
    from nin_repro.reproduce import Options, on_cpu, preflight, reproduce, stalled_seeds, training_images

    dry_run, rows = kw.pop("dry_run", False), kw.pop("rows", None)
    module = load_experiment(name.replace("-", "_"))
    table = module.TABLE
    if kw.pop("demo", False):
        if not hasattr(module, "DEMO_TABLE"):
            raise UsageError(f"--demo: {name} has no demo-scale version (`nin-repro demo` is the demo of the main tables)")
        table = module.DEMO_TABLE
    opts = Options(**kw)
    opts.validate()
    keys = table.select_rows(rows) if rows is not None else table.rows_to_run(opts.baselines)
    # What runs (--rows, --baselines): the plan, the checks and the estimate cover only the chosen rows.
    chosen = dataclasses.replace(table, variants=tuple(v for v in table.variants if v.key in keys))
    if dry_run:
        _print_plan(chosen, opts)
        return
    if not opts.smoke:
        preflight(chosen, opts)  # no data and no internet: say so now, not after the estimate below
    if on_cpu() and not opts.smoke and training_images(chosen, opts) > 1_000_000:
        # A full-length table on a CPU takes days: say so, with a measured estimate, before starting.
        from nin_repro.results import format_duration

        total = _print_plan(chosen, opts)
        if total > 86_400:
            err_console.print(f"[yellow]warning:[/yellow] this run needs about {format_duration(total)} on this CPU (estimate); use a GPU, or --smoke / --epochs N to try it")
    md, js = reproduce(table, opts, RichProgress(err_console), variants=keys)
    typer.echo(md.read_text(encoding="utf-8"))
    console.print(f"[green]wrote[/green] {md} and {js}")
    stalled = stalled_seeds(js)
    if stalled:
        raise SeedsStalled(
            f"{'; '.join(stalled)} stalled on every attempt; the table shows the seeds that finished. "
            "More tries, each from a fresh initialisation: the same command with --set attempts=5; why seeds stall: nin-repro init-study"
        )


def _print_plan(table, opts) -> float:
    """Print each row's seeds, epochs, images and time estimate, and the worst case with retries; return the total seconds."""
    from nin_repro.estimate import describe_plan

    title, columns, rows, notes, total = describe_plan(table, opts)
    print_table(title, columns, rows)
    for line in notes:
        typer.echo(line)
    return total


def _register_table(name: str, help_text: str, has_demo: bool) -> None:
    """One command per paper table, all with the same options."""

    def command(
        data_dir: Optional[Path] = DataDir,
        cache_dir: Optional[Path] = CacheDir,
        results_dir: Path = ResultsDir,
        workdir: Path = Workdir,
        seeds: Optional[int] = Seeds,
        epochs: Optional[float] = Epochs,
        batch_size: Optional[int] = BatchSize,
        recipe: str = RecipeOpt,
        download: bool = Download,
        smoke: bool = Smoke,
        warmup_epochs: Optional[float] = Warmup,
        tfds_data_dir: Optional[Path] = TfdsDir,
        set_: Optional[list[str]] = SetOpt,
        checkpoint_every: float = CkptEvery,
        parallel_seeds: Optional[bool] = ParallelSeeds,
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print each row's size and a time estimate for this device (a cached or short measured img/s), and the worst case with retries, then stop."
        ),
        demo: bool = typer.Option(False, "--demo", help="The demo-scale version on 5,000 real digits (about two minutes on a CPU).", hidden=not has_demo),
        rows: Optional[str] = Rows,
        baselines: bool = Baselines,
    ) -> None:
        _run_table(
            name,
            demo=demo,
            rows=rows,
            baselines=baselines,
            data_dir=data_dir,
            cache_dir=cache_dir,
            results_dir=results_dir,
            workdir=workdir,
            seeds=seeds,
            epochs=epochs,
            batch_size=batch_size,
            schedule=recipe,
            download=download,
            smoke=smoke,
            warmup_epochs=warmup_epochs,
            tfds_data_dir=tfds_data_dir,
            overrides=tuple(set_ or ()),
            checkpoint_every_min=checkpoint_every,
            parallel_seeds=parallel_seeds,
            dry_run=dry_run,
        )

    app.command(name=name, help=help_text)(command)


@app.callback()
def _root(
    distributed: bool = typer.Option(
        False, "--distributed", help="Several hosts: join them with jax.distributed.initialize() before anything else (README, 'Several devices and several hosts')."
    ),
) -> None:
    if distributed:
        import jax

        jax.distributed.initialize()


# One command per experiment file that declares COMMAND_HELP (read without importing the file).
TABLE_COMMANDS = table_commands()
for _command in TABLE_COMMANDS:
    _register_table(_command.name, _command.help, _command.has_demo)


@app.command("tables")
def tables() -> None:
    """Print the table commands, one per line, in the paper's order (the Makefile's reproduce-all runs them)."""
    for command in TABLE_COMMANDS:
        typer.echo(command.name)


@app.command()
def demo(
    results_dir: Path = ResultsDir,
    workdir: Path = Workdir,
    seeds: Optional[int] = Seeds,
    epochs: Optional[float] = Epochs,
) -> None:
    """Offline demo: a reduced-width NIN on 5,000 real MNIST digits shipped with the package (about 30 s on 2 CPU cores)."""
    _run_table("demo", results_dir=results_dir, workdir=workdir, seeds=seeds, epochs=epochs)


@app.command("reproduce-all")
def reproduce_all(
    tables_: Optional[list[str]] = typer.Option(None, "--tables", help="Only these tables [default: all, `nin-repro tables`].", show_default=False),
    executor: str = typer.Option("host", "--executor", help="host: a worker per device here; slurm: a job array (submitit); local: submitit's local executor."),
    devices: Optional[int] = typer.Option(None, "--devices", help="Devices (workers) [default: each GPU; CPU: cores/2, at most 4]; --dry-run: plan for N.", show_default=False),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/N: run every N-th job from the i-th (several machines without SLURM, one --workdir).", show_default=False),
    report_only: bool = typer.Option(False, "--report", help="Train nothing: write every table whose jobs have all finished, the report, and say which jobs are missing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the job list's placement on the devices and the estimated makespan, then stop."),
    device_kind: Optional[str] = typer.Option(None, "--device-kind", help="The accelerator to estimate for, e.g. 'NVIDIA H100' [default: the GPU present].", show_default=False),
    efficiency: float = typer.Option(1.0, "--efficiency", help="--dry-run: the fraction of the roofline ceiling training reaches (`nin-repro bench`); 1: a lower bound."),
    retries: int = typer.Option(2, "--retries", help="Times a job whose worker died (killed, no result) is run again; it resumes from its checkpoint."),
    partition: Optional[str] = typer.Option(None, "--partition", help="[slurm] Partition.", show_default=False),
    gpus_per_job: Optional[int] = typer.Option(None, "--gpus-per-job", help="[slurm/local] GPUs per job [default: slurm 1, local 0]; >1: data parallel.", show_default=False),
    cpus_per_job: int = typer.Option(8, "--cpus-per-job", help="[slurm/local] CPUs per job."),
    mem_gb: Optional[int] = typer.Option(None, "--mem-gb", help="[slurm] Memory per job, GB.", show_default=False),
    time_min: int = typer.Option(240, "--time", help="[slurm/local] Time limit per job, minutes (a timed-out job is requeued and resumes)."),
    account: Optional[str] = typer.Option(None, "--account", help="[slurm] Account.", show_default=False),
    qos: Optional[str] = typer.Option(None, "--qos", help="[slurm] QOS.", show_default=False),
    constraint: Optional[str] = typer.Option(None, "--constraint", help="[slurm] Node constraint, e.g. h100.", show_default=False),
    array_parallelism: int = typer.Option(256, "--array-parallelism", help="[slurm] Array tasks running at once."),
    slurm_option: Optional[list[str]] = typer.Option(None, "--slurm-option", help="[slurm] Any other sbatch option as key=value (e.g. exclude=node12).", show_default=False),
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    results_dir: Path = ResultsDir,
    workdir: Path = Workdir,
    seeds: Optional[int] = Seeds,
    epochs: Optional[float] = Epochs,
    batch_size: Optional[int] = BatchSize,
    recipe: str = RecipeOpt,
    download: bool = Download,
    smoke: bool = Smoke,
    set_: Optional[list[str]] = SetOpt,
    checkpoint_every: float = CkptEvery,
    parallel_seeds: Optional[bool] = ParallelSeeds,
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also the tables' baseline rows (conv. maxout + dropout, stochastic pooling)."),
) -> None:
    """Every table (or --tables), its (table, variant, seed group) jobs spread over the devices: one
    worker per GPU here, a SLURM job array, or --shard i/N; each table written once its jobs finish, then the report."""
    from nin_repro.reproduce import Options
    from nin_repro.scaleout import parse_shard
    from nin_repro.scaleout import reproduce_all as run_all

    for item in slurm_option or ():
        if "=" not in item:
            raise UsageError(f"--slurm-option {item!r}: expected key=value, e.g. exclude=node12")
    opts = Options(
        results_dir=results_dir, workdir=workdir, data_dir=data_dir, cache_dir=cache_dir, download=download, seeds=seeds, epochs=epochs, batch_size=batch_size,
        schedule=recipe, smoke=smoke, overrides=tuple(set_ or ()), checkpoint_every_min=checkpoint_every, parallel_seeds=parallel_seeds, baselines=baselines,
    )  # fmt: skip
    cluster = None
    if executor in ("slurm", "local"):
        from nin_repro.cluster import ClusterOptions

        gpus = gpus_per_job if gpus_per_job is not None else (1 if executor == "slurm" else 0)
        cluster = ClusterOptions(partition, gpus, cpus_per_job, mem_gb, time_min, account, qos, constraint, array_parallelism, tuple(slurm_option or ()))
    out = run_all(
        [t for item in tables_ or () for t in item.split(",") if t] or None, opts, executor=executor, devices=devices, shard=parse_shard(shard),
        dry_run=dry_run, device_kind=device_kind, report_only=report_only, retries=retries, cluster=cluster, efficiency=efficiency, say=typer.echo,
    )  # fmt: skip
    if out is None:
        return
    written, not_written = out
    for table in written:
        typer.echo(f"written: {table}")
    for line in not_written:
        typer.echo(line)
    failed = [line for line in not_written if ": incomplete" in line]
    if failed or (not_written and shard is None):
        raise TrainingFailed(f"{len(not_written)} table(s) not written ({'; '.join(not_written)}); the other tables are written. Run the same command again to resume")


data_app = typer.Typer(help="Fetch, check and locate datasets (for compute nodes without internet).", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("where")
def data_where(dataset: Optional[str] = typer.Argument(None), data_dir: Optional[Path] = DataDir, cache_dir: Optional[Path] = CacheDir) -> None:
    """Print where each dataset is looked for: the cache, the original files, tensorflow-datasets."""
    from nin_repro.data.locate import dataset_names, where

    for name in dataset_names(dataset):
        for line in where(name, data_dir, cache_dir):
            typer.echo(line)


@data_app.command("download")
def data_download(
    dataset: str = typer.Argument(..., help="cifar10, cifar100, mnist, ..."),
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    tfds_data_dir: Optional[Path] = TfdsDir,
) -> None:
    """Fetch and convert a dataset into the cache ahead of time (from --data-dir files or tensorflow-datasets)."""
    from nin_repro.data import cache, load_dataset
    from nin_repro.data.locate import dataset_names

    (name,) = dataset_names(dataset)
    ds = load_dataset(name, data_dir=data_dir, cache_dir=cache_dir, download=True, tfds_data_dir=tfds_data_dir, require_cache=True)
    npz, _ = cache.cache_paths(cache_dir or cache.default_cache_dir(), name)
    typer.echo(f"{name}: {len(ds.x_train)} train / {len(ds.x_test)} test images from {ds.source}; cached at {npz}")


@data_app.command("verify")
def data_verify(dataset: Optional[str] = typer.Argument(None), cache_dir: Optional[Path] = CacheDir) -> None:
    """Check cached datasets against their recorded sha256; exit 1 if any is damaged, incomplete or unreadable."""
    from nin_repro.data.locate import cache_problem, dataset_names, verify_cache

    states = {}
    for name in dataset_names(dataset):
        npz, state, detail = verify_cache(name, cache_dir)
        typer.echo(f"{name}: not cached" if state == "not cached" else f"{name}: {state} ({npz}{'; ' + detail if detail else ''})")
        states[name] = (state, detail)
    problem = cache_problem(states)
    if problem:
        raise NinError(problem)


@app.command()
def bench(
    table: str = typer.Option("cifar10", "--table", help="Whose network to time (cifar10, cifar100, mnist, demo)."),
    row: Optional[str] = typer.Option(None, "--row", help="The table's row (variant) whose network to time, e.g. --row maxout_dropout [default: the first].", show_default=False),
    batch_size: list[int] = typer.Option([128], "--batch-size", help="Repeatable: --batch-size 128 --batch-size 512."),
    dtype: list[str] = typer.Option(["fp32"], "--dtype", help="Repeatable: fp32 and/or bf16 (compute dtype; parameters stay fp32)."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Timed steps per configuration, after compile and one warm-up [default: 20; 3 on a CPU, where a step takes seconds].", show_default=False
    ),
    peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops", help="Peak TFLOP/s of this device, for % of peak when it is not in our table.", show_default=False),
    hbm_gb_s: Optional[float] = typer.Option(
        None, "--hbm-gb-s", help="Memory bandwidth of this device (GB/s), for the memory ceiling when it is not in our table.", show_default=False
    ),
    seeds: list[int] = typer.Option(
        [1], "--seeds", help="Repeatable: K models (seeds 0..K-1) trained at once by one vmapped step, e.g. --seeds 1 --seeds 5; img/s is summed over them."
    ),
    rng: list[str] = typer.Option(
        ["threefry2x32"],
        "--rng",
        help="Repeatable: the random generator of the dropout masks and augmentation (threefry2x32, rbg, unsafe_rbg), e.g. to measure what threefry costs.",
    ),
    pool_grad: list[str] = typer.Option(
        ["auto"],
        "--pool-grad",
        help="Repeatable: the max pools' gradient, xla (select_and_scatter), mask (no scatter) or auto (mask on a CPU, xla elsewhere), e.g. --pool-grad xla --pool-grad mask.",
    ),
    peer: Optional[str] = typer.Option(
        None,
        "--peer",
        help="torch: also time the same network in PyTorch (bench/peer_torch.py; torch installed), interleaved with ours, and print ours / the peer's.",
        show_default=False,
    ),
    peer_rounds: int = typer.Option(8, "--peer-rounds", help="Interleaved steps per side for --peer (the median step is reported)."),
    results_dir: Path = ResultsDir,
    cache_dir: Optional[Path] = CacheDir,
) -> None:
    """Training and evaluation img/s, TFLOP/s and % of peak for a table's network; writes results/bench.md
    (and caches the training img/s for the estimates of --dry-run)."""
    from nin_repro.bench import COLUMNS, bench_table, summary_rows

    results, out, prov, comparisons = bench_table(
        table,
        batch_sizes=batch_size,
        dtypes=dtype,
        steps=steps,
        seeds=seeds,
        rng_impls=rng,
        pool_grads=pool_grad,
        peak_tflops=peak_tflops,
        hbm_gb_s=hbm_gb_s,
        results_dir=results_dir,
        peer=peer,
        peer_rounds=peer_rounds,
        cache_dir=cache_dir,
        row=row,
    )
    print_table(f"nin-repro bench: {table}{'/' + row if row else ''} on {prov['device']['kind']}", COLUMNS, summary_rows(results))
    for c in comparisons:
        typer.echo(f"ours vs peer: {c.line()}")
    console.print(f"[green]wrote[/green] {out}")


@app.command("eval")
def eval_run(
    run_dir: Path = typer.Argument(..., help="A run folder: runs/<table>/<variant>/seed_<k>"),
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    download: bool = Download,
) -> None:
    """Re-evaluate a saved run's final parameters on its test set with its saved preprocessing."""
    from nin_repro.reproduce import check_run

    check = check_run(run_dir, data_dir=data_dir, cache_dir=cache_dir, download=download)
    error, recorded = check.test_error, check.recorded_test_error
    same = "equals" if check.equal else "DIFFERS FROM"
    typer.echo(f"{run_dir}: test error {100 * error:.2f}% on {check.num_test} images ({check.data_source}); {same} the recorded {100 * recorded:.2f}% (written to {check.path})")
    if not check.equal:
        raise NinError(f"re-evaluation of {run_dir} gives {100 * error:.4f}%, the run recorded {100 * recorded:.4f}%")


RunOpt = typer.Option(
    None, "--run", help="A run folder (runs/<table>/<variant>/seed_<k>) [default: the best saved run in --workdir; none: train a demo-scale model].", show_default=False
)
Canvas = typer.Option(None, "--canvas", help="Canvas size (px) on which digits are pasted for the pointing score of digit models [default: twice the input].", show_default=False)
TrainEpochs = typer.Option(None, "--epochs", help="Epochs for a model trained on demand (when no saved run is found) [default: the demo's 12].", show_default=False)


def _source(workdir, data_dir, cache_dir, download, epochs):
    from nin_repro.explain import Source

    if epochs is not None and not epochs > 0:
        raise UsageError(f"--epochs must be positive, got {epochs}")
    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir} is not a folder")
    return Source(workdir=workdir, data_dir=data_dir, cache_dir=cache_dir, download=download, epochs=epochs)


def _say(text: str) -> None:
    err_console.print(text, highlight=False, soft_wrap=True)


def _done(*paths) -> None:
    typer.echo(paths[0].read_text(encoding="utf-8"))
    console.print("[green]wrote[/green] " + ", ".join(str(p) for p in paths))


@app.command()
def figure4(
    run: Optional[Path] = RunOpt,
    per_class: int = typer.Option(1, "--per-class", help="Test images per class in the figure."),
    canvas: Optional[int] = Canvas,
    workdir: Path = Workdir,
    results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    download: bool = Download,
    epochs: Optional[float] = TrainEpochs,
) -> None:
    """The paper's Figure 4 (class maps of a GAP NIN), how often the strongest map is the prediction, and pointing accuracy on digits."""
    from nin_repro import explain

    if per_class <= 0:
        raise UsageError(f"--per-class must be positive, got {per_class}")
    src = _source(workdir, data_dir, cache_dir, download, epochs)
    loaded = explain.find_or_train(run, explain.GAP_RUNS, src, _say)
    _done(*explain.figure4(loaded, explain.dataset_of(loaded, src), results_dir, per_class=per_class, canvas=canvas))


@app.command()
def cam(
    run: Optional[Path] = RunOpt,
    images: int = typer.Option(6, "--images", help="Test images shown (one per class)."),
    canvas: Optional[int] = Canvas,
    workdir: Path = Workdir,
    results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    download: bool = Download,
    epochs: Optional[float] = TrainEpochs,
) -> None:
    """Class activation maps (Zhou et al. 2016) of a GAP -> Dense model (or a pure GAP NIN): top-1 and top-2 classes, pointing accuracy."""
    from nin_repro import explain

    if images <= 0:
        raise UsageError(f"--images must be positive, got {images}")
    src = _source(workdir, data_dir, cache_dir, download, epochs)
    loaded = explain.find_or_train(run, explain.CAM_RUNS, src, _say)
    _done(*explain.cam(loaded, explain.dataset_of(loaded, src), results_dir, images=images, canvas=canvas))


@app.command("gap-claims")
def gap_claims(
    gap: Optional[Path] = typer.Option(None, "--gap", help="Run folder of the GAP model [default: ablate-gap's nin_gap, else a demo-scale one].", show_default=False),
    fc: Optional[Path] = typer.Option(None, "--fc", help="Run folder of the FC model on the same trunk [default: ablate-gap's nin_fc, else a demo-scale one].", show_default=False),
    sizes: str = typer.Option("24,28,32,40,48", "--sizes", help="Input sizes (px, comma-separated) to evaluate at without retraining; the training size is always added."),
    max_shift: int = typer.Option(4, "--max-shift", help="Largest translation (px) tried."),
    workdir: Path = Workdir,
    results_dir: Path = ResultsDir,
    data_dir: Optional[Path] = DataDir,
    cache_dir: Optional[Path] = CacheDir,
    download: bool = Download,
    epochs: Optional[float] = TrainEpochs,
) -> None:
    """GAP head vs FC head on the same trunk: parameters, other input sizes, translations, train-test gap."""
    from nin_repro import explain

    if max_shift < 0:
        raise UsageError(f"--max-shift must be >= 0, got {max_shift}")
    try:
        size_list = tuple(int(v) for v in sizes.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--sizes {sizes!r}: give pixel sizes separated by commas, e.g. 24,32,40") from None
    if not size_list or min(size_list) < 8:
        raise UsageError(f"--sizes {sizes!r}: give sizes of at least 8 px")
    if (gap is None) != (fc is None):
        raise UsageError("pass both --gap and --fc, or neither")
    src = _source(workdir, data_dir, cache_dir, download, epochs)
    if gap is not None:
        g, f = explain.find_or_train(gap, (), src, _say), explain.find_or_train(fc, (), src, _say)
    else:
        g, f = explain.find_or_train_pair(src, _say)
    for name, loaded, want in (("--gap", g, ("gap", "gap_dense")), ("--fc", f, ("fc", "fc_dropout"))):
        if loaded.head not in want:
            raise UsageError(f"{name} {loaded.run_dir} has head {loaded.head!r}: expected {' or '.join(want)}")
    _done(*explain.gap_claims(g, f, explain.dataset_of(g, src), results_dir, sizes=size_list, max_shift=max_shift))


@app.command()
def plot(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run folders (runs/<table>/<variant>/seed_<k>)."),
    out: Path = typer.Option(Path("results/curves.png"), "--out", help="Where the PNG is written."),
) -> None:
    """Training loss, test error and learning rate per epoch of saved runs, on one figure."""
    import warnings

    from nin_repro import explain
    from nin_repro.figures import MetricsWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricsWarning)
        png = explain.plot(run_dirs, out)
    # Each file is read more than once (check, then draw): one warning per distinct message.
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, MetricsWarning)):
        _one_line_warning(message, MetricsWarning, "", 0)
    for w in caught:
        if not issubclass(w.category, MetricsWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    console.print(f"[green]wrote[/green] {png}")


@app.command("init-study")
def init_study(
    results_dir: Path = ResultsDir,
    workdir: Path = Workdir,
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per variant [default: 8].", show_default=False),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Epochs per seed [default: 6]; fewer mark the study as shortened.", show_default=False),
    width: float = typer.Option(1.0, "--width", help="Multiply every hidden width (a cheaper check; < 1 marks the study as shortened)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Run only this variant (repeatable).", show_default=False),
    parallel_seeds: Optional[bool] = ParallelSeeds,
    signal_only: bool = typer.Option(
        False, "--signal-only", help="Train nothing: the signal scale at init of every variant, eval and training view (results/init-study-signal.md)."
    ),
) -> None:
    """Why the paper's MNIST recipe stalls on real digits, and the smallest change that makes it learn
    (input scale, signal scale at init, stall rate per variant over 8 seeds): results/init-study.md."""
    from nin_repro.progress import RichProgress
    from nin_repro.study import run_study

    if seeds is not None and seeds < 1 or epochs is not None and not (epochs > 0 and epochs < float("inf")) or not 0 < width <= 1:
        raise UsageError("--seeds must be >= 1, --epochs positive and --width in (0, 1]")
    md, js = run_study(results_dir, workdir, seeds, epochs, width, tuple(only or ()), parallel_seeds, RichProgress(err_console), signal_only=signal_only)
    typer.echo(md.read_text(encoding="utf-8"))
    console.print(f"[green]wrote[/green] {md} and {js}")


@app.command("check-gpu")
def check_gpu(
    budget: float = typer.Option(9.0, "--budget", help="Wall-clock minutes for the whole check, compiles included; a part that does not fit is cut and recorded as cut."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and an estimate of each part on this device (a few measured steps), train nothing."),
    scale: str = typer.Option("full", "--scale", help="full (the plan of issue 18) or tiny (seconds on a CPU: a check of the command, marked shortened)."),
    part: Optional[list[str]] = typer.Option(
        None,
        "--part",
        help="Run only this part (repeatable): bench, cifar, mnist, init-study; baselines (only when named: the maxout SVHN and CIFAR-10 nets on the digits).",
        show_default=False,
    ),
    width: Optional[float] = typer.Option(None, "--width", help="Multiply every hidden width (marks the check shortened).", show_default=False),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Epochs of every table row (marks the check shortened).", show_default=False),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds of every row and study variant (marks the check shortened).", show_default=False),
    horizon: Optional[int] = typer.Option(None, "--horizon", help="init-study steps per seed (default 3000).", show_default=False),
    variant: Optional[list[str]] = typer.Option(None, "--variant", help="init-study variant (repeatable; default every one).", show_default=False),
    results_dir: Path = ResultsDir,
    workdir: Path = typer.Option(Path("runs/check-gpu"), "--workdir", help="Where the check's run folders go (a fresh timestamped folder per check)."),
) -> None:
    """The first thing to run on a GPU machine: bench, the CIFAR-10 and MNIST recipes at full length
    on the shipped digits, and init-study at 3,000 steps, within --budget minutes: results/check-gpu.md."""
    from nin_repro import checkgpu

    plan = checkgpu.shrunk(scale, width=width, epochs=epochs, seeds=seeds, horizon=horizon, variants=tuple(variant or ()))
    parts = tuple(part or checkgpu.PARTS)
    if not budget >= 0 or budget == float("inf"):
        raise UsageError(f"--budget must be a number of minutes >= 0, got {budget}")
    if dry_run:
        typer.echo(f"check-gpu plan ({scale}{', shortened: ' + plan.shortened() if plan.shortened() else ''}), budget {budget:g} min, on this device:")
        for line in checkgpu.estimate(plan, checkgpu.check_parts(parts), 60 * budget):
            typer.echo(line)
        return
    check = checkgpu.Check(plan, scale, 60 * budget, results_dir, workdir, say=_say)
    md, js = checkgpu.run_check(check, parts)
    typer.echo(md.read_text(encoding="utf-8"))
    console.print(f"[green]wrote[/green] {md} and {js}")


@app.command()
def report(results_dir: Path = ResultsDir) -> None:
    """Rebuild results/README.md (one line per paper row) from every results/*.json table."""
    from nin_repro.report import write_report

    if not results_dir.is_dir():
        raise UsageError(f"--results-dir {results_dir} is not a folder: run a table command first")
    out = write_report(results_dir)
    typer.echo(out.read_text(encoding="utf-8"))
    console.print(f"[green]wrote[/green] {out}")


def _persistent_compilation_cache() -> None:
    """Compiled programs are kept on disk (XLA's persistent cache), so a second start of the same
    table skips most compilation. Set through the environment, before jax is imported; a user's
    own JAX_COMPILATION_CACHE_DIR wins."""
    import os

    from nin_repro.data.cache import default_cache_dir

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(default_cache_dir() / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the Typer app and turns every expected failure into one line + exit code."""
    from nin_repro.quiet import FilteredStderr

    _persistent_compilation_cache()
    if isinstance(sys.stderr, FilteredStderr):
        return _main(argv)
    stderr, sys.stderr = sys.stderr, FilteredStderr(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stderr.flush()
        sys.stderr = stderr


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (a damaged cache being rebuilt, a cache that could not be written ...) as one line,
    without Python's file:line and source line."""
    from rich.markup import escape

    text = " ".join(str(message).split())
    err_console.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True, markup=True)


def _main(argv: list[str] | None) -> int:
    import warnings

    showwarning, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        return _run_app(argv)
    finally:
        warnings.showwarning = showwarning


def _run_app(argv: list[str] | None) -> int:
    wide_help_off_a_terminal()
    try:
        code = app(args=argv, prog_name="nin-repro", standalone_mode=False)
        # Typer turns a KeyboardInterrupt outside our own handlers (start-up, data loading) into 130.
        if code == 130:
            err_console.print("[red]interrupted[/red]: stopped before the run finished; run the same command again (a started run resumes)", soft_wrap=True)
            return 130
        if isinstance(code, int) and code:
            return code
    except NinError as e:
        err_console.print(f"[red]error:[/red] {e}", markup=True, highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]: nothing was written for the unfinished run", soft_wrap=True)
        return 130
    except Exception as e:
        # Click's usage errors (Typer vendors click in recent versions, so match by interface).
        if type(e).__name__ == "NoArgsIsHelpError":
            err_console.print(e.format_message(), markup=False, highlight=False)
            return 0
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            err_console.print(f"[red]error:[/red] {e.format_message()} (see nin-repro --help)", highlight=False, soft_wrap=True)
            return EXIT_BAD_INPUT
        if type(e).__name__ == "Abort":
            err_console.print("[red]aborted[/red]")
            return 130
        if not isinstance(e, OSError):
            raise
        import errno

        where = f": {e.filename}" if e.filename else ""
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            hint = "free some space (--workdir, --results-dir, the cache) and run the same command again; a started run resumes from its last checkpoint"
        else:
            hint = "check the path and its permissions"
        err_console.print(f"[red]error:[/red] {e.strerror or e}{where} ({hint})", highlight=False, soft_wrap=True)
        return EXIT_RUN_FAILED
    return 0


def entry() -> None:
    from nin_repro.quiet import FilteredStderr

    # For the whole process: library threads may still print after main() returns.
    sys.stderr = FilteredStderr(sys.stderr)
    sys.exit(main())


if __name__ == "__main__":
    entry()
