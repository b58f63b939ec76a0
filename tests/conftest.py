"""Shared fixtures: one smoke run of `nin-repro cifar10` for every test that reads its output."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import tempfile

import pytest

from tests.figures_drawn import record_figures

# One persistent XLA compilation cache for the whole session (and the subprocesses tests start):
# many tests compile the same small programs; measured 480 s -> 416 s for the suite on 2 cores.
# Set before jax is imported; a fresh folder, so nothing carries over between sessions.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="nin-repro-test-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
# Most of the suite's CPU time was compiling (283 of 723 s on 2 cores): programs the tests jit
# themselves compile without XLA's optimisations (they run once, on tiny inputs); training and
# evaluation keep their own pinned level (nin_repro.xla_options), so they run as fast as for users.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# Tests also run from a source checkout without an install (PYTHONPATH=.): test files import the
# experiment files as nin_repro.experiments.
from nin_repro.registry import register_experiments  # noqa: E402

register_experiments()


# The longest tests go first, so that no xdist worker starts a long one when the other is nearly done.
LONGEST_FIRST = ("test_mnist_real_digits.py", "test_demo.py", "smoke_cifar10", "demo_scale", "test_other_tables_smoke", "test_ablation_commands")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        names = (item.nodeid, *getattr(item, "fixturenames", ()))
        return next((i for i, key in enumerate(LONGEST_FIRST) if any(key in n for n in names)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the file order otherwise


@pytest.fixture(scope="session")
def smoke_cifar10(tmp_path_factory, worker_id):
    """Runs `nin-repro cifar10 --smoke` once per test session, however many xdist workers use it:
    the first builds it under a lock in the folder the workers share, the others read it (xdist's
    loadgroup cannot send a fixture's tests to one worker under pytest 9: it rewrites
    ``Item._nodeid``, which pytest 9 no longer reads). The tests only read it or copy from it.
    Returns its folders and the table JSON."""
    from nin_repro.cli import main

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    root = shared / "smoke-cifar10"
    results, runs = root / "results", root / "runs"
    with open(shared / "smoke-cifar10.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (root / "built").exists():
            code = main(["cifar10", "--smoke", "--results-dir", str(results), "--workdir", str(runs)])
            assert code == 0
            (root / "built").write_text("ok\n")
    table = json.loads((results / "smoke" / "cifar10.json").read_text())
    return {"root": root, "results": results, "runs": runs, "table": table}


@pytest.fixture(scope="module")
def tiny_runs_compile_at_o0():
    """For modules whose runs are a few steps of tiny networks, where compiling is most of the time:
    their training and evaluation programs compile at XLA:CPU O0 too (measured on 2 cores: these
    modules 145 -> 106 CPU-s; the smoke tables and the demo, which train for seconds, would be 2-3x
    slower, so they keep the users' level). Programs built here are dropped at the end, so no later
    module trains with them."""
    from nin_repro import train, xla_options

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xla_options, "REPEATED", xla_options.RUN_ONCE)
        yield
    train._program.cache_clear()


@pytest.fixture(autouse=True)
def _download_hosts_reachable(monkeypatch):
    """Hermetic: the check that a download host answers (nin_repro.data.tfds_source.unreachable)
    succeeds without touching the network; tests of the offline path replace it."""
    from nin_repro.data import tfds_source

    monkeypatch.setattr(tfds_source, "_connect", lambda host, port, timeout: None)


@pytest.fixture(autouse=True)
def _step_rates_apart(monkeypatch, tmp_path_factory):
    """bench and --dry-run cache img/s in the cache folder: without --cache-dir, a test's go to a
    folder of the session, never to the user's (nor come from it)."""
    from nin_repro import estimate

    folder = tmp_path_factory.getbasetemp() / "step-rates"
    monkeypatch.setattr(estimate, "default_cache_dir", lambda: folder)


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures saved during the test (see record_figures)."""
    return record_figures(monkeypatch)
