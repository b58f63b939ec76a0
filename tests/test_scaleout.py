"""`nin-repro reproduce-all`: jobs over worker processes, a killed worker resumed, a failed job
reported, the submitit local executor. Smoke tables of 1-2 epochs, at most 2 workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nin_repro.cli import main
from nin_repro.recipe import SMOKE_BATCH
from nin_repro.reproduce import SMOKE_TRAIN, Options, apply_options, variant_dir
from nin_repro.scaleout import load_table, make_plan, parse_shard, place, shard_jobs

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--smoke", "--epochs", "1", "--no-baselines"]  # the NIN rows: reproduce-all runs the baseline rows by default


def folders(tmp: Path) -> list[str]:
    return ["--workdir", str(tmp / "runs"), "--results-dir", str(tmp / "results")]


def per_seed(table_json: Path) -> dict:
    """A table's rows without what depends on where and how fast it ran (folders, times): the
    per-seed errors, steps, stalls ... must not depend on how the jobs were scheduled."""
    table = json.loads(table_json.read_text())
    return {v["key"]: {k: x for k, x in v.items() if k not in ("run_dirs", "wall_s", "train_img_per_s")} for v in table["variants"]}


def job_logs(tmp: Path) -> dict[str, str]:
    (state,) = (tmp / "runs" / "smoke" / "reproduce-all").iterdir()
    return {p.stem: p.read_text() for p in (state / "logs").glob("*.log")}


def seed_folder(tmp: Path, table: str, variant: str, epochs: float) -> Path:
    t = load_table(table)
    v = t.variant(variant)
    recipe = apply_options(v.recipe, Options(smoke=True, epochs=epochs), t.smoke)[0]
    base = apply_options(v.recipe, Options(smoke=True), t.smoke)[0]
    return variant_dir(tmp / "runs" / "smoke" / table, v, recipe, base) / "seed_0"


@pytest.fixture(scope="module")
def sequential_svhn(tmp_path_factory) -> dict:
    """The table command run as before: one table, its seeds one after another."""
    tmp = tmp_path_factory.mktemp("sequential")
    assert main(["svhn", *SMOKE, *folders(tmp)]) == 0
    return per_seed(tmp / "results" / "smoke" / "svhn.json")


def test_job_list_shards_and_placement(capsys):
    opts = Options(smoke=True, seeds=3)
    cpu = make_plan(["mnist", "ablate-gap"], opts, "cpu")
    gpu = make_plan(["mnist", "ablate-gap"], opts, "gpu")
    # Without opts.baselines the tables' NIN rows only (mnist's baseline rows: --baselines, below).
    variants = [(t, key) for t in ("mnist", "ablate-gap") for key in load_table(t).rows_to_run(False)]
    # Every (variant, seed) in exactly one job: on a CPU one seed a job, on a GPU a variant's seeds together.
    assert sorted((j.table, j.variant, s) for j in cpu.jobs for s in j.seeds) == sorted((t, v, s) for t, v in variants for s in range(3))
    assert [len(j.seeds) for j in cpu.jobs] == [1] * 3 * len(variants)
    assert sorted((j.table, j.variant, j.seeds) for j in gpu.jobs) == sorted((t, v, (0, 1, 2)) for t, v in variants)
    assert cpu.opts.parallel_seeds is False and gpu.opts.parallel_seeds is True
    # --shard i/N: the shards together are the job list, each job in one shard.
    shards = [shard_jobs(cpu.jobs, parse_shard(f"{i}/4")) for i in range(4)]
    assert sorted(j.name for s in shards for j in s) == sorted(j.name for j in cpu.jobs)
    # Longest first onto the least busy device: no device idles while another has two jobs' worth more.
    lanes, busy = place(list(cpu.jobs), 3)
    assert sum(len(lane) for lane in lanes) == len(cpu.jobs)
    assert max(busy) - min(busy) <= max(j.flops for j in cpu.jobs)
    # --dry-run for 8 H100s: the placement and a makespan, no training.
    assert main(["reproduce-all", "--dry-run", "--devices", "8", "--device-kind", "NVIDIA H100", "--tables", "mnist,ablate-gap"]) == 0
    out = capsys.readouterr().out
    assert "on 8 x NVIDIA H100" in out and "makespan about" in out and out.count("\ndevice ") == 8
    # reproduce-all runs the tables' baseline rows by default, each a job like the NIN rows.
    assert "mnist.maxout_dropout.seeds_0_1_2" in out and "mnist.stochastic_pooling.seeds_0_1_2" in out and "mnist.nin_dropout.seeds_0_1_2" in out
    assert main(["reproduce-all", "--dry-run", "--device-kind", "NVIDIA H100", "--tables", "mnist", "--no-baselines"]) == 0
    assert "maxout" not in capsys.readouterr().out
    assert main(["reproduce-all", "--shard", "4/4", "--tables", "mnist"]) == 2


def test_host_executor_failed_job_then_every_job_once(tmp_path, sequential_svhn, capsys):
    """Two workers, svhn + mnist; one mnist run folder is held by another process, so its job fails:
    mnist is reported incomplete with the reason, svhn is written and equals the sequential run.
    Run again once the folder is free: only the failed job runs again, and mnist is written."""
    from nin_repro.runlock import run_folder_lock

    args = ["reproduce-all", "--tables", "svhn,mnist", "--devices", "2", *SMOKE, *folders(tmp_path)]
    with run_folder_lock([seed_folder(tmp_path, "mnist", "nin_dropout", 1)]):
        assert main(args) == 1
    out = capsys.readouterr().out
    assert "written: svhn" in out
    assert "mnist: incomplete (job mnist.nin_dropout.seeds_0 failed: run folder" in out and "is in use by process" in out
    assert not (tmp_path / "results" / "smoke" / "mnist.json").exists()
    assert per_seed(tmp_path / "results" / "smoke" / "svhn.json") == sequential_svhn
    assert "svhn" in (tmp_path / "results" / "smoke" / "README.md").read_text()

    assert main(args) == 0
    assert "written: mnist" in capsys.readouterr().out
    logs = job_logs(tmp_path)
    starts = {name: text.count("\n--- ") + text.startswith("--- ") for name, text in logs.items()}
    assert starts == {"svhn.nin_dropout.seeds_0": 1, "mnist.nin_dropout_ours.seeds_0": 1, "mnist.nin_dropout.seeds_0": 2, "table:svhn": 1, "table:mnist": 1}
    table = json.loads((tmp_path / "results" / "smoke" / "mnist.json").read_text())
    assert [v["key"] for v in table["variants"]] == [v.key for v in load_table("mnist").variants if not v.baseline]  # run with --no-baselines


def test_killed_worker_is_rerun_and_resumes(tmp_path):
    """SIGKILL to a worker after its first checkpoint: the job is run again, resumes there, and the table is written."""
    run = seed_folder(tmp_path, "svhn", "nin_dropout", 2)
    cmd = [sys.executable, "-m", "nin_repro", "reproduce-all", "--tables", "svhn", "--devices", "1", "--smoke", "--epochs", "2", "--no-baselines", "--checkpoint-every", "0"]
    cmd += folders(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, deadline = None, time.monotonic() + 600
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        steps = [p for p in run.glob("checkpoints/*/*") if p.name.isdigit()]
        if steps:
            killed = int((run / ".run.lock").read_text().split()[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=600)
    assert killed is not None, out
    assert proc.returncode == 0, out
    assert "no result: running it again" in out and "written: svhn" in out
    log = job_logs(tmp_path)["svhn.nin_dropout.seeds_0"]
    per_epoch = SMOKE_TRAIN // SMOKE_BATCH
    assert log.count("--- ") == 2 and f"resumed at step {per_epoch}" in log  # the checkpoint at the first epoch's end
    table = json.loads((tmp_path / "results" / "smoke" / "svhn.json").read_text())
    assert table["variants"][0]["steps"] == 2 * per_epoch


def test_submitit_local_executor_array_and_report(tmp_path, sequential_svhn, capsys, monkeypatch):
    # submitit's logging would otherwise hold this test's captured (then closed) stdout/stderr.
    monkeypatch.setenv("SUBMITIT_LOG_LEVEL", "NOCONFIG")
    pytest.importorskip("submitit")
    assert main(["reproduce-all", "--executor", "local", "--tables", "svhn", "--time", "20", *SMOKE, *folders(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "submitted 1 job(s)" in out and "written: svhn" in out
    assert per_seed(tmp_path / "results" / "smoke" / "svhn.json") == sequential_svhn
    (state,) = (tmp_path / "runs" / "smoke" / "reproduce-all").iterdir()
    assert len(list((state / "submitit").glob("*_result.pkl"))) == 2  # the array's job and the report job


def test_slurm_executor_submits_an_array_and_a_dependent_report(tmp_path, monkeypatch, capsys):
    """No SLURM here: stand-ins for sbatch and srun record what submitit asks of them."""
    monkeypatch.setenv("SUBMITIT_LOG_LEVEL", "NOCONFIG")
    pytest.importorskip("submitit")
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.log"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    # Appends its arguments and the batch script to the log; answers as sbatch does.
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\nfor a in "$@"; do f="$a"; done\ncat "$f" >> {log}\necho "Submitted batch job 7$(grep -c "^#!" {log})"\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    slurm = ["--partition", "gpu", "--time", "90", "--account", "acc", "--slurm-option", "exclude=n1"]
    args = ["reproduce-all", "--executor", "slurm", "--tables", "mnist", "--smoke", "--no-baselines", *slurm, *folders(tmp_path)]
    assert main(args) == 0
    assert "as array 71" in capsys.readouterr().out
    array, report = log.read_text().split("#!/bin/bash")[1:]
    for line in ("--partition=gpu", "--time=90", "--account=acc", "--exclude=n1", "--gpus-per-node=1"):
        assert f"#SBATCH {line}\n" in array and f"#SBATCH {line.replace('=90', '=60')}\n" in report
    assert "#SBATCH --array=0-1%2\n" in array and "#SBATCH --dependency=afterany:71\n" in report


def test_shards_and_report_write_no_table_with_missing_runs(tmp_path, capsys):
    """--shard 0/2 and 1/2 of mnist's two jobs on one --workdir; --report in between names the missing job."""
    common = ["reproduce-all", "--tables", "mnist", "--devices", "1", *SMOKE, *folders(tmp_path)]
    assert main([*common, "--shard", "0/2"]) == 0
    assert "mnist: not written (not finished: mnist.nin_dropout_ours.seeds_0)" in capsys.readouterr().out
    assert main([*common, "--report"]) == 1
    assert "mnist: not written (not finished: mnist.nin_dropout_ours.seeds_0)" in capsys.readouterr().out
    assert not (tmp_path / "results" / "smoke" / "mnist.json").exists()
    assert main([*common, "--shard", "1/2"]) == 0
    assert "written: mnist" in capsys.readouterr().out
    assert sorted(job_logs(tmp_path)) == ["mnist.nin_dropout.seeds_0", "mnist.nin_dropout_ours.seeds_0", "table:mnist"]
