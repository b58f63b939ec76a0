"""A run killed mid-way resumes from its last checkpoint and ends exactly where an
uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "nin_repro", "mnist", "--smoke", "--checkpoint-every", "0", "--results-dir", str(root / "results"), "--workdir", str(root / "runs")]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(root: Path) -> dict:
    proc = subprocess.run(_cmd(root), capture_output=True, text=True, timeout=300, env=_env(), cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((root / "results" / "smoke" / "mnist.json").read_text())


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = subprocess.Popen(_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=killed)
    ckpt_root = killed / "runs" / "smoke" / "mnist" / "nin_dropout" / "seed_0" / "checkpoints"
    deadline = time.time() + 240
    try:
        # Wait for a finished mid-run checkpoint (orbax renames its temporary folder when done).
        while time.time() < deadline:
            steps = [p for p in ckpt_root.glob("*/*") if p.name.isdigit()] if ckpt_root.exists() else []
            if len(steps) >= 1 and max(int(p.name) for p in steps) >= 2 * 24:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no mid-run checkpoint appeared")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (killed / "results" / "smoke" / "mnist.json").exists()  # no result from a killed run

    resumed = _run(killed)
    fresh_root = tmp_path / "fresh"
    fresh_root.mkdir()
    fresh = _run(fresh_root)
    assert len(resumed["variants"]) == len(fresh["variants"]) == 2  # the recipe as published, and ours
    for r, f in zip(resumed["variants"], fresh["variants"]):
        assert r["steps"] == f["steps"]
        assert r["errors_pct"] == f["errors_pct"]

    def metrics(root):
        return [json.loads(line) for line in (root / "runs/smoke/mnist/nin_dropout/seed_0/metrics.jsonl").read_text().splitlines()]

    mr, mf = metrics(killed), metrics(fresh_root)
    assert [m["epoch"] for m in mr] == [m["epoch"] for m in mf]
    assert [m["train_loss"] for m in mr] == [m["train_loss"] for m in mf]


def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    metrics = tmp_path / "runs" / "smoke" / "mnist" / "nin_dropout" / "seed_0" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped by SIGTERM" in err and "run the same command again to resume" in err and "Traceback" not in err
    assert not (tmp_path / "results" / "smoke" / "mnist.json").exists()
    assert _run(tmp_path)["variants"][0]["steps"] == 8 * 24


def test_two_tables_writing_one_results_folder_at_once(tmp_path):
    results = tmp_path / "results"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nin_repro", name, "--smoke", "--epochs", "1", "--results-dir", str(results), "--workdir", str(tmp_path / name)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=tmp_path,
        )
        for name in ("mnist", "cifar10")
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    for name in ("mnist", "cifar10"):
        data = json.loads((results / "smoke" / f"{name}.json").read_text())
        assert data["table"]["name"] == name and data["variants"]
    summary = (results / "smoke" / "README.md").read_text()
    assert "(mnist.md)" in summary and "(cifar10.md)" in summary  # the later summary saw both tables
    assert not [p for p in (results / "smoke").iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_names_the_fitted_preprocessing(smoke_cifar10):
    run = smoke_cifar10["runs"] / "smoke" / "cifar10" / "nin_dropout" / "seed_0"
    record = json.loads((run / "run.json").read_text())
    metas = sorted(run.glob("checkpoints/*/*/meta/metadata"))
    assert metas, list(run.rglob("*"))[:20]
    meta = json.loads(metas[-1].read_text())
    assert meta["run"]["preprocess"] == record["preprocess"] and meta["seed"] == 0
    assert meta["position"]["step"] == record["result"]["steps"]
