"""`nin-repro bench --peer torch`: our training and evaluation steps against a PyTorch peer's.

The peer (``bench/peer_torch.py``, in the source checkout; torch is never a dependency) builds the
same network from the same model config and runs as a child process. The two are timed step by
step, interleaved (ours, the peer's, ours, ...), so background load on a shared CPU falls on both
alike; each side's rate is its median step over the rounds and the ratio is ours / the peer's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax

from nin_repro.errors import NinError, UsageError
from nin_repro.recipe import Recipe

PEERS = ("torch",)
PEER_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "peer_torch.py"


@dataclasses.dataclass(frozen=True)
class PeerComparison:
    peer: str  # "torch 2.13.0+cpu"
    threads: int
    batch_size: int
    rounds: int
    ours_train_img_s: float  # median step over the rounds
    peer_train_img_s: float
    ours_eval_img_s: float
    peer_eval_img_s: float

    @property
    def train_ratio(self) -> float:
        return self.ours_train_img_s / self.peer_train_img_s

    @property
    def eval_ratio(self) -> float:
        return self.ours_eval_img_s / self.peer_eval_img_s

    def line(self) -> str:
        return (
            f"batch {self.batch_size}, {self.rounds} interleaved rounds, peer {self.peer} ({self.threads} threads): "
            f"training {self.ours_train_img_s:,.0f} vs {self.peer_train_img_s:,.0f} img/s = {self.train_ratio:.2f}x; "
            f"evaluation {self.ours_eval_img_s:,.0f} vs {self.peer_eval_img_s:,.0f} img/s = {self.eval_ratio:.2f}x"
        )


def check_peer(peer: str) -> None:
    """A usage error (before any timing) when the peer cannot run here."""
    if peer not in PEERS:
        raise UsageError(f"unknown --peer {peer!r}: choose one of {', '.join(PEERS)}")
    if not PEER_SCRIPT.exists():
        raise UsageError(f"--peer {peer}: {PEER_SCRIPT} is missing (it is in the source checkout, not the installed package)")
    if importlib.util.find_spec("torch") is None:
        raise UsageError(f"--peer {peer} needs PyTorch in this environment (pip install torch); nin-repro itself never depends on it")


def _start(table: str, batch_size: int, threads: int) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PEER_SCRIPT.parents[1]), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(PEER_SCRIPT), "--serve", "--table", table, "--batch-size", str(batch_size), "--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline()
    if not first:
        err = proc.stderr.read().strip().splitlines()
        raise NinError(f"the torch peer did not start: {err[-1] if err else 'no output'}")
    return proc, json.loads(first)


def compare(table: str, recipe: Recipe, *, batch_size: int, rounds: int, threads: int | None = None) -> PeerComparison:
    """Time ``rounds`` training steps and ``rounds`` evaluation batches of ours and of the peer,
    interleaved one step at a time; float32, one seed, ``recipe``'s network (the peer builds the
    same network from ``table``'s experiment file)."""
    from nin_repro.bench import bench_programs

    threads = threads or os.cpu_count() or 1
    _, train_once, eval_once, _, _, _ = bench_programs(recipe, batch_size=batch_size, dtype="float32", steps=1)
    jax.block_until_ready(train_once())  # compile
    jax.block_until_ready(eval_once())
    proc, ready = _start(table, batch_size, threads)
    times: dict[str, list[float]] = {k: [] for k in ("ours train", "peer train", "ours eval", "peer eval")}
    try:
        for _ in range(rounds):
            for what, ours in (("train", train_once), ("eval", eval_once)):
                t0 = time.perf_counter()
                jax.block_until_ready(ours())
                times[f"ours {what}"].append(time.perf_counter() - t0)
                proc.stdin.write(what + "\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
                if not answer:
                    raise NinError(f"the torch peer stopped: {proc.stderr.read().strip()[-300:] or 'no output'}")
                times[f"peer {what}"].append(float(answer))
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    rate = {k: batch_size / statistics.median(v) for k, v in times.items()}
    return PeerComparison(f"{ready['peer']} {ready['version']}", ready["threads"], batch_size, rounds, rate["ours train"], rate["peer train"], rate["ours eval"], rate["peer eval"])
