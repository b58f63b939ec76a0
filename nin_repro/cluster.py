"""``reproduce-all --executor slurm|local``: the job list through submitit (an existing engine).

The jobs go in as one job array; the report (every table whose jobs finished, then ``report``)
as one more job that depends on the array (SLURM: ``--dependency=afterany``; the local executor:
submitted once the array has ended). A pre-empted or timed-out array task is requeued by submitit
(``Checkpointable``) and resumes from its last checkpoint through the table command's resume.
The run folders, results and submitit's own logs live on the shared filesystem under --workdir
and --results-dir.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import submitit

from nin_repro.errors import UsageError
from nin_repro.scaleout import Job, Plan, finish, load_plan, run_task, status


class Task(submitit.helpers.Checkpointable):
    """One job of the array; on pre-emption or time-out submitit requeues the same call."""

    def __call__(self, plan_dir: str, name: str) -> str:
        return run_task(Path(plan_dir), name)


class Report(submitit.helpers.Checkpointable):
    """The job after the array: every table whose jobs are all done, then the report."""

    def __call__(self, plan_dir: str) -> tuple[list[str], list[str]]:
        return finish(load_plan(Path(plan_dir)))


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: float | None = None
    time_min: int = 240
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 256
    extra: tuple[str, ...] = ()  # other sbatch options, key=value (e.g. exclude=node12)


def executor(kind: str, folder: Path, c: ClusterOptions) -> submitit.AutoExecutor:
    import shutil

    if kind == "slurm" and not (shutil.which("srun") and shutil.which("sbatch")):
        raise UsageError("--executor slurm: no srun/sbatch on this machine; run the command on the cluster's login node (or use --shard i/N)")
    ex = submitit.AutoExecutor(folder=folder, cluster=kind)
    params: dict = {"name": "nin-repro", "timeout_min": c.time_min, "gpus_per_node": c.gpus_per_job, "cpus_per_task": c.cpus_per_job, "tasks_per_node": 1, "nodes": 1}
    if c.mem_gb:
        params["mem_gb"] = c.mem_gb
    if kind == "slurm":
        params["slurm_array_parallelism"] = c.array_parallelism
        for key, value in (("partition", c.partition), ("account", c.account), ("qos", c.qos), ("constraint", c.constraint)):
            if value:
                params[f"slurm_{key}"] = value
        if c.extra:
            params["slurm_additional_parameters"] = dict(item.split("=", 1) for item in c.extra)
    ex.update_parameters(**params)
    return ex


def submit(plan: Plan, jobs: list[Job], kind: str, c: ClusterOptions, say=print) -> tuple[list[str], list[str]] | None:
    """Submit ``jobs`` as an array and the report after it. ``local``: waits, returns what
    ``finish`` returns; ``slurm``: returns None once submitted (the report job writes the tables)."""
    ex = executor(kind, plan.dir / "submitit", c)
    todo = [j for j in jobs if (status(plan, j.name) or {}).get("state") != "done"]  # a finished job is not submitted again
    array = ex.map_array(Task(), [str(plan.dir)] * len(todo), [j.name for j in todo]) if todo else []
    say(f"submitted {len(array)} job(s)" + (f" as array {array[0].job_id.split('_')[0]}" if array else ""))
    if kind == "slurm":
        extra = dict(item.split("=", 1) for item in c.extra)
        if array:
            extra["dependency"] = f"afterany:{array[0].job_id.split('_')[0]}"
        ex.update_parameters(slurm_additional_parameters=extra, timeout_min=min(c.time_min, 60), slurm_array_parallelism=1)
        report = ex.submit(Report(), str(plan.dir))
        say(f"submitted the report job {report.job_id} (runs after the array); logs in {plan.dir / 'submitit'}")
        return None
    for job in array:
        job.wait()
    report = ex.submit(Report(), str(plan.dir))
    return report.result()
