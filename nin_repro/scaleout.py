"""`nin-repro reproduce-all`: every table's runs spread over the devices it is given.

A job is (table, variant, seed group): the seeds one device trains together, all of a variant's
seeds as one vmapped program where seeds train at once (GPU/TPU), else one seed. A job trains
through ``reproduce(..., variants, seeds, write=False)`` into the shared --workdir, so it keeps
the table command's run folders, checkpoints and resume: a killed or pre-empted job's rerun
continues from its last checkpoint, and a finished seed group is not trained again. When every job
of a table has finished, one more pass of ``reproduce`` over the whole table (a *table task*)
finds every run finished, restores its final checkpoint, evaluates it again (deterministic: the
numbers are the sequential run's) and writes the table. Then ``report``.

Executors: ``host`` (ours, one machine): one worker process per device, pinned with
CUDA_VISIBLE_DEVICES (CPU: N processes), longest job first, the next job to the first free
worker, a table task as soon as its table's jobs are done. ``local`` / ``slurm``: submitit
(nin_repro.cluster). ``--shard i/N``: every N-th job, for clusters without SLURM.

State, on the shared filesystem: ``<workdir>/[smoke/]reproduce-all/<options key>/``: ``plan.pkl``
(the options and the job list), one status file per job and per table (``status/<name>.json``:
done or failed, with the reason; a job with no status has not finished), ``logs/<name>.log``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

from nin_repro import atomic
from nin_repro.errors import NinError, UsageError
from nin_repro.reproduce import TRAIN_SIZES, Options, apply_options, smoke_train_size

TABLE_TASK = "table:"  # a table task's name: "table:<command>"


@dataclasses.dataclass(frozen=True)
class Job:
    table: str  # the table command, e.g. "ablate-gap"
    variant: str
    seeds: tuple[int, ...]  # trained together (one vmapped program) when more than one
    images: int  # training images processed, all its seeds
    flops: float  # training FLOPs (3 x forward, layer shapes: bench.roofline)
    ceiling_img_s: float | None = None  # the roofline ceiling on --device-kind (None: unknown)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.variant}.seeds_{'_'.join(map(str, self.seeds))}"

    def estimate_s(self) -> float | None:
        """Training seconds at the device's roofline ceiling: a lower bound (evaluation not counted)."""
        return self.images / self.ceiling_img_s if self.ceiling_img_s else None


@dataclasses.dataclass(frozen=True)
class Plan:
    opts: Options  # parallel_seeds resolved: the jobs' seed groups and the table task's must agree
    tables: tuple[str, ...]
    jobs: tuple[Job, ...]
    dir: Path

    def table_jobs(self, table: str) -> list[Job]:
        return [j for j in self.jobs if j.table == table]


def load_table(command: str):
    from nin_repro.recipe import load_experiment

    return load_experiment(command.replace("-", "_")).TABLE


def group_seeds(seeds: tuple[int, ...], one_at_a_time: bool, together: bool) -> list[tuple[int, ...]]:
    """The seed groups ``reproduce.train_with_retries`` trains (first attempts). ``one_at_a_time``:
    ``Recipe.seeds_pick_their_length``."""
    if together and len(seeds) > 1 and not one_at_a_time:
        return [tuple(seeds)]
    return [(s,) for s in seeds]


def job_list(tables: list[str], opts: Options, device_kind: str | None = None) -> list[Job]:
    """Every (table, variant, seed group) of ``tables``, in the tables' order (the baseline rows
    with ``opts.baselines``); ``opts.parallel_seeds`` resolved."""
    from nin_repro.bench import HBM_BYTES_PER_S, PEAK_TFLOPS, roofline

    jobs = []
    for command in tables:
        table = load_table(command)
        keys = table.rows_to_run(opts.baselines)
        for variant in (v for v in table.variants if v.key in keys):
            recipe, _ = apply_options(variant.recipe, opts, table.smoke)
            n = smoke_train_size(recipe.model.num_classes) if opts.smoke else TRAIN_SIZES.get(recipe.dataset, 50_000)
            per_seed = recipe.total_steps(max(1, n // recipe.batch_size)) * recipe.batch_size
            dtype = recipe.model.dtype
            peak = PEAK_TFLOPS.get(device_kind or "", {}).get(dtype)
            roof = roofline(recipe.model, "train", dtype, peak, HBM_BYTES_PER_S.get(device_kind or ""))
            for group in group_seeds(recipe.seeds, recipe.seeds_pick_their_length, bool(opts.parallel_seeds)):
                images = per_seed * len(group)
                jobs.append(Job(command, variant.key, group, images, images * roof.flops, roof.ceiling_img_s))
    return jobs


def options_key(opts: Options, tables: list[str]) -> str:
    """The runs a set of options trains (and where their tables go): one state folder each."""
    fields = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("data_dir", "cache_dir", "tfds_data_dir", "download", "checkpoint_every_min")}
    return hashlib.sha256(json.dumps([fields, tables], sort_keys=True, default=str).encode()).hexdigest()[:10]


def make_plan(tables: list[str], opts: Options, backend: str, device_kind: str | None = None) -> Plan:
    if opts.parallel_seeds is None:  # reproduce's default, decided here once for every process
        opts = dataclasses.replace(opts, parallel_seeds=backend != "cpu")
    opts.validate()
    state = Path(opts.workdir) / ("smoke" if opts.smoke else "") / "reproduce-all" / options_key(opts, tables)
    return Plan(opts, tuple(tables), tuple(job_list(tables, opts, device_kind)), state)


def save_plan(plan: Plan) -> Path:
    (plan.dir / "status").mkdir(parents=True, exist_ok=True)
    (plan.dir / "logs").mkdir(exist_ok=True)
    path = plan.dir / "plan.pkl"
    atomic.write_bytes(path, pickle.dumps(plan))
    return path


def load_plan(plan_dir: Path) -> Plan:
    return pickle.loads((Path(plan_dir) / "plan.pkl").read_bytes())


# ------------------------------------------------------------------ status files


def status(plan: Plan, name: str) -> dict | None:
    try:
        return json.loads((plan.dir / "status" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def set_status(plan: Plan, name: str, state: str, reason: str = "") -> None:
    atomic.write_json(plan.dir / "status" / f"{name}.json", {"state": state, "reason": reason, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})


def table_state(plan: Plan, table: str) -> tuple[str, str]:
    """("written" | "ready" | "failed" | "missing", why) for one table, from its jobs' status files."""
    own = status(plan, TABLE_TASK + table)
    if own and own["state"] == "done":
        return "written", own["reason"]
    jobs = plan.table_jobs(table)
    failed = [(j.name, s["reason"]) for j in jobs if (s := status(plan, j.name)) and s["state"] == "failed"]
    if failed:
        return "failed", "; ".join(f"job {n} failed: {r}" for n, r in failed)
    if own and own["state"] == "failed":
        return "failed", own["reason"]
    missing = [j.name for j in jobs if not (s := status(plan, j.name)) or s["state"] != "done"]
    if missing:
        return "missing", "not finished: " + ", ".join(missing)
    return "ready", ""


# ------------------------------------------------------------------ one task, in its own process


def run_task(plan_dir: Path, name: str) -> str:
    """Run one job, or one table task, and record how it ended. An interrupted task (SIGTERM,
    pre-emption) records nothing: it is to be run again, and resumes from its checkpoint."""
    from nin_repro.reproduce import reproduce
    from nin_repro.train import Interrupted

    plan = load_plan(plan_dir)
    try:
        if name.startswith(TABLE_TASK):
            with _table_lock(plan, name):  # shards that finish together: one writes, the other finds it written
                table = name[len(TABLE_TASK) :]
                state, why = table_state(plan, table)
                if state == "written":
                    return why
                if state != "ready":
                    raise UsageError(f"table {table} is not ready to write ({why})")
                md, _ = reproduce(load_table(table), plan.opts, _LogProgress())
                set_status(plan, name, "done", str(md))
                return str(md)
        else:
            job = next((j for j in plan.jobs if j.name == name), None)
            if job is None:
                raise UsageError(f"no job {name!r} in {plan_dir}")
            reproduce(load_table(job.table), plan.opts, _LogProgress(), variants=(job.variant,), seeds=job.seeds, write=False)
            result = "trained"
    except Interrupted:
        raise
    except NinError as e:
        set_status(plan, name, "failed", " ".join(str(e).split()))
        raise
    except Exception as e:
        set_status(plan, name, "failed", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
        raise
    set_status(plan, name, "done", result)
    return result


@contextlib.contextmanager
def _table_lock(plan: Plan, name: str):
    import fcntl

    with open(plan.dir / "status" / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # waits; released by the kernel if its holder dies
        yield


class _LogProgress:
    """One line per run start and per epoch, for a worker's log file."""

    def start(self, total_steps: int, description: str) -> None:
        print(f"start {description}: {total_steps} steps", flush=True)

    def update(self, step: int, *, epoch: float, loss: float, img_per_s: float) -> None:
        pass

    def epoch_end(self, record: dict) -> None:
        print(json.dumps(record), flush=True)

    def close(self) -> None:
        pass


def worker_main(argv: list[str]) -> int:
    """``python -m nin_repro.scaleout <plan dir> <task>``: one worker process of the host executor."""
    from nin_repro.train import Interrupted

    try:
        print(run_task(Path(argv[0]), argv[1]), flush=True)
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except NinError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    return 0


# ------------------------------------------------------------------ the host executor


def local_devices() -> tuple[str, list[str], str | None]:
    """(backend, device ids, device kind) without starting JAX (a scheduler that held a GPU would
    take memory from its workers): NVIDIA GPUs from CUDA_VISIBLE_DEVICES or nvidia-smi, else CPU."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout
        gpus = [line.split(",", 1) for line in out.splitlines() if "," in line]
    except (OSError, subprocess.SubprocessError):
        gpus = []
    if not gpus:
        return "cpu", [], None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible is not None else [g[0].strip() for g in gpus]
    return ("gpu", ids, gpus[0][1].strip()) if ids else ("cpu", [], None)  # CUDA_VISIBLE_DEVICES="": none for us


def place(jobs: list[Job], devices: int) -> tuple[list[list[Job]], list[float]]:
    """Longest first, each to the device that frees first (what the host executor does); the
    jobs and the estimated busy time of each device. Cost: seconds at the ceiling, else FLOPs."""
    lanes: list[list[Job]] = [[] for _ in range(devices)]
    busy = [0.0] * devices
    for job in sorted(jobs, key=lambda j: -(j.estimate_s() or j.flops)):
        d = busy.index(min(busy))
        lanes[d].append(job)
        busy[d] += job.estimate_s() or job.flops
    return lanes, busy


def run_host(plan: Plan, jobs: list[Job], device_ids: list[str], backend: str, retries: int = 2, say=print) -> None:
    """Run ``jobs`` (those without a done status), one worker process per device, and each table
    task of ``plan`` as soon as its jobs are all done. A worker that dies without a status (killed)
    is run again, up to ``retries`` times, and resumes from its checkpoint."""
    todo = [j.name for j in sorted(jobs, key=lambda j: -(j.estimate_s() or j.flops)) if (status(plan, j.name) or {}).get("state") != "done"]
    tries: dict[str, int] = {}
    running: dict[str, tuple[subprocess.Popen, str]] = {}  # device -> (worker, task)
    free = list(device_ids)
    while True:
        ready = [TABLE_TASK + t for t in plan.tables if table_state(plan, t)[0] == "ready" and TABLE_TASK + t not in {task for _, task in running.values()}]
        queue = ready + todo
        while free and queue:
            task = queue.pop(0)
            if task in todo:
                todo.remove(task)
            device = free.pop(0)
            running[device] = (_start_worker(plan, task, device, backend), task)
            say(f"start {task} on {'GPU ' + device if backend == 'gpu' else 'worker ' + device}")
        if not running:
            return
        time.sleep(0.2)
        for device, (proc, task) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[device]
            free.append(device)
            ended = status(plan, task)
            if ended is not None:
                say(f"{ended['state']} {task}" + (f": {ended['reason']}" if ended["state"] == "failed" else ""))
                continue
            tries[task] = tries.get(task, 0) + 1
            if tries[task] <= retries:
                say(f"worker of {task} ended with code {proc.returncode} and no result: running it again (it resumes from its checkpoint)")
                if not task.startswith(TABLE_TASK):
                    todo.insert(0, task)
            else:
                set_status(plan, task, "failed", f"its worker ended with code {proc.returncode} {tries[task]} times without a result (log: {plan.dir / 'logs' / (task + '.log')})")
                say(f"failed {task}: gave up after {tries[task]} tries")


def _start_worker(plan: Plan, task: str, device: str, backend: str) -> subprocess.Popen:
    env = dict(os.environ)
    if backend == "gpu":
        env["CUDA_VISIBLE_DEVICES"] = device  # one device per worker: a crash or a memory spike stays its own
    log = open(plan.dir / "logs" / f"{task}.log", "a")
    log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {task} on {backend} {device}\n")
    log.flush()
    try:
        return subprocess.Popen([sys.executable, "-m", "nin_repro.scaleout", str(plan.dir), task], env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


# ------------------------------------------------------------------ the end: tables, report, what is missing


def finish(plan: Plan, write_ready: bool = True) -> tuple[list[str], list[str]]:
    """Write every table whose jobs are all done (in this process), then the report. Returns
    (tables written, one line per table not written: incomplete with the reason, or missing jobs)."""
    from nin_repro.report import write_report
    from nin_repro.train import Interrupted

    written, not_written = [], []
    for table in plan.tables:
        state, why = table_state(plan, table)
        if state == "ready" and write_ready:
            try:
                run_task(plan.dir, TABLE_TASK + table)
            except Interrupted:
                raise
            except Exception:
                pass  # recorded in its status
            state, why = table_state(plan, table)
        if state == "written":
            written.append(table)
        else:
            not_written.append(f"{table}: {'incomplete' if state == 'failed' else 'not written'} ({why or state})")
    results = Path(plan.opts.results_dir) / ("smoke" if plan.opts.smoke else "")
    if results.is_dir():
        write_report(results)
    lines = [f"# reproduce-all: {len(written)} of {len(plan.tables)} tables written", ""]
    lines += [f"- {t}: written" for t in written] + [f"- {line}" for line in not_written]
    atomic.write_text(plan.dir / "status.md", "\n".join(lines) + "\n")
    return written, not_written


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text}: expected i/N, e.g. --shard 0/4 (shards 0..N-1)") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--shard {text}: i must be in 0..N-1 and N >= 1")
    return i, n


def shard_jobs(jobs: tuple[Job, ...], shard: tuple[int, int] | None) -> list[Job]:
    """Every N-th job of the plan's fixed order, from the i-th."""
    return list(jobs) if shard is None else list(jobs[shard[0] :: shard[1]])


def describe_placement(plan: Plan, devices: int, device_kind: str | None, efficiency: float = 1.0) -> list[str]:
    """``--dry-run``: which jobs each device runs, longest first, and the estimated makespan.
    ``efficiency``: the fraction of the roofline ceiling training reaches (``nin-repro bench``'s
    "% of ceiling"); 1 gives the lower bound."""
    from nin_repro.results.stats import format_duration

    lanes, busy = place(list(plan.jobs), devices)
    timed = all(j.ceiling_img_s for j in plan.jobs)
    if timed:
        busy = [b / efficiency for b in busy]

    def cost(x: float) -> str:
        return format_duration(x) if timed else f"{x / 1e15:,.1f} PFLOP"

    total_images = sum(j.images for j in plan.jobs)
    lines = [f"{len(plan.jobs)} jobs from {len(plan.tables)} tables, {total_images:,} training images in all, on {devices} x {device_kind or 'device of unknown peak'}"]
    for d, (lane, b) in enumerate(zip(lanes, busy)):
        lines.append(f"device {d}: {cost(b)}: " + ", ".join(j.name for j in lane))
    serial = sum(busy)
    if timed:
        lines.append(
            f"makespan about {cost(max(busy))} (all jobs one after another: {cost(serial)}); estimate at "
            + (f"{efficiency:.0%} of " if efficiency != 1 else "")
            + f"the roofline ceiling of {device_kind} (bench.PEAK_TFLOPS / HBM_BYTES_PER_S, FLOPs and bytes from the layer shapes), training only"
            + ("" if efficiency != 1 else ": a lower bound; pass --efficiency F, the fraction of the ceiling `nin-repro bench` measures")
        )
    else:
        lines.append(f"makespan about {cost(max(busy))} of training per device (of {cost(serial)}); no peak known for this device: pass --device-kind, e.g. 'NVIDIA H100'")
    return lines


def reproduce_all(
    tables: list[str] | None,
    opts: Options,
    *,
    executor: str = "host",
    devices: int | None = None,
    shard: tuple[int, int] | None = None,
    dry_run: bool = False,
    device_kind: str | None = None,
    report_only: bool = False,
    retries: int = 2,
    cluster=None,
    efficiency: float = 1.0,
    say=print,
) -> tuple[list[str], list[str]] | None:
    """The whole of ``reproduce-all``: plan, run (or submit, or only print the placement), finish.
    Returns (tables written, tables not written with why); None when only printed or submitted."""
    from nin_repro.registry import table_commands

    known = [c.name for c in table_commands()]
    tables = list(tables or known)
    unknown = [t for t in tables if t not in known]
    if unknown:
        raise UsageError(f"--tables: no table command {', '.join(unknown)}; the tables: {', '.join(known)}")
    if executor not in ("host", "local", "slurm"):
        raise UsageError(f"--executor {executor}: choose host, local or slurm")
    if not 0 < efficiency <= 1:
        raise UsageError(f"--efficiency must be in (0, 1], got {efficiency}")
    if devices is not None and devices < 1:
        raise UsageError(f"--devices must be >= 1, got {devices}")
    backend, ids, present_kind = local_devices()
    device_kind = device_kind or present_kind
    if device_kind and backend == "cpu":
        backend = "gpu"  # planning for a named accelerator (--dry-run --device-kind): its seed groups
    if executor == "slurm" and cluster is not None:
        backend = "gpu" if cluster.gpus_per_job else "cpu"
    if backend == "cpu" and not ids:
        ids = [str(i) for i in range(devices or max(1, min(4, (os.cpu_count() or 2) // 2)))]
    elif devices is not None:
        if devices > len(ids) and not dry_run and executor == "host":
            raise UsageError(f"--devices {devices}: only {len(ids)} GPU(s) visible here")
        ids = ids[:devices] if devices <= len(ids) else [str(i) for i in range(devices)]
    plan = make_plan(tables, opts, backend, device_kind)
    if dry_run:
        for line in describe_placement(plan, len(ids) or 1, device_kind, efficiency):
            say(line)
        return None
    save_plan(plan)
    for table in plan.tables:  # a table that failed to be written is tried again once its jobs are done
        if (status(plan, TABLE_TASK + table) or {}).get("state") == "failed":
            (plan.dir / "status" / f"{TABLE_TASK + table}.json").unlink(missing_ok=True)
    jobs = shard_jobs(plan.jobs, shard)
    if report_only:
        return finish(plan)
    say(f"{len(jobs)} of {len(plan.jobs)} jobs" + (f" (shard {shard[0]}/{shard[1]})" if shard else "") + f"; state in {plan.dir}")
    if executor == "host":
        run_host(plan, jobs, ids, backend, retries, say)
        return finish(plan)
    try:
        from nin_repro.cluster import ClusterOptions, submit
    except ImportError:
        raise UsageError(f"--executor {executor} needs submitit: pip install 'nin-repro[cluster]'") from None
    return submit(plan, jobs, executor, cluster or ClusterOptions(gpus_per_job=0 if backend == "cpu" else 1), say)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
