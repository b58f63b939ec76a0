"""Speed: the epoch as one compiled call with nothing moving implicitly between host and device,
data parallelism over a device mesh, several seeds in one compiled program (vmap)."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nin_repro.train as train
from nin_repro.recipe import Recipe
from tests.test_train import CIFAR10_RECIPE, TINY

pytestmark = pytest.mark.usefixtures("tiny_runs_compile_at_o0")  # tiny runs: conftest.py


def tiny_recipe(**kw) -> Recipe:
    base = dict(dataset="synthetic", preprocess="scale01", model=TINY, batch_size=8, epochs=1, seeds=(0,), eval_batch_size=7, augment=True, bias_lr_drops=True, ours=())
    return dataclasses.replace(CIFAR10_RECIPE, **{**base, **kw})


def tiny_data(n=64, m=21) -> train.PreparedData:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n + m).astype(np.int32)
    x = (rng.normal(size=(n + m, 8, 8, 1)) + 1.5 * y[:, None, None, None]).astype(np.float32)
    return train.PreparedData(x[:n], y[:n], x[n:], y[n:], 4, "test")


def test_a_whole_epoch_is_one_compiled_call_under_the_transfer_guard(tmp_path, monkeypatch):
    """train_and_evaluate with chunk = steps per epoch: the epoch is one call of the compiled
    scan, its inputs are already on the device, and nothing is copied implicitly during it."""
    calls = []
    make = train.make_train_steps

    def spying_make(*a, **kw):
        compiled = make(*a, **kw)

        def call(*args):
            assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(args)), "a host value reached the compiled step"
            with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
                jnp.asarray(np.zeros(1))  # _train's own guard is on around the call
            with jax.transfer_guard("disallow"):
                out = compiled(*args)
                jax.block_until_ready(out)
            calls.append(a[3])  # num_steps
            return out

        return call

    monkeypatch.setattr(train, "make_train_steps", spying_make)
    train._program.cache_clear()  # compiled steps are cached per recipe
    res = train.train_and_evaluate(tiny_recipe(epochs=2), tiny_data(), tmp_path, seed=0, chunk_steps=8)
    assert calls == [8, 8] and res.steps == 16 and np.isfinite(res.test_loss)
    train._program.cache_clear()


def _serve_tiny_data(monkeypatch):
    """Table commands load ``tiny_data()`` (as uint8 images) instead of a real dataset."""
    from nin_repro import reproduce as rep
    from nin_repro.data import Dataset

    d = tiny_data()

    def to_uint8(x):
        return np.clip(x * 30 + 60, 0, 255).astype(np.uint8)

    dataset = Dataset("tiny", to_uint8(d.x_train), d.y_train, to_uint8(d.x_test), d.y_test, 4, ("a", "b", "c", "d"), "synthetic")
    monkeypatch.setattr(rep, "load_table_data", lambda recipe, opts: dataset)


def _tiny_state(recipe, seed):
    model = train.init_model(recipe, seed)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = train._program(recipe).tx
    return graphdef, tx, (params, tx.init(params))


@pytest.mark.parametrize("num_steps", [1, 4])  # one step, and the scanned epoch a GPU runs
def test_vmapped_seeds_equal_separate_runs(num_steps):
    """K seeds in one program (the gradient of the summed vmapped loss) = each seed alone."""
    recipe, data = tiny_recipe(), tiny_data()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    seeds = (0, 1, 2)
    keys = [jax.random.key(s) for s in seeds]
    perms = [train.epoch_permutation(k, 0, len(x)) for k in keys]
    lr_scale = jnp.float32(recipe.base_lr)
    graphdef, tx, _ = _tiny_state(recipe, 0)
    step = train.make_train_steps(graphdef, tx, recipe, num_steps, 8)
    separate = [step(_tiny_state(recipe, s)[2], x, y, perms[s], keys[s], 0, 0, lr_scale) for s in seeds]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *(_tiny_state(recipe, s)[2] for s in seeds))
    step_k = train.make_train_steps(graphdef, tx, recipe, num_steps, 8, over_seeds=True)
    (params_k, _), m_k = step_k(stacked, x, y, jnp.stack(perms), jnp.stack(keys), 0, 0, lr_scale)
    assert m_k["loss"].shape == (3, num_steps)
    for s, ((params, _), m) in enumerate(separate):
        np.testing.assert_allclose(m_k["loss"][s], m["loss"], rtol=1e-5)
        np.testing.assert_array_equal(m_k["correct"][s], m["correct"])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[s], b, rtol=1e-4, atol=1e-6), params_k, params)
    assert not np.allclose(m_k["loss"][0], m_k["loss"][1])  # each seed its own init and randomness


FOUR_DEVICES = r"""
import json, sys
import jax, numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
sys.path.insert(0, sys.argv[1])
import test_parallel as t
import nin_repro.train as train
from nin_repro.parallel import data_mesh

assert len(jax.devices()) == 4
recipe, data = t.tiny_recipe(), t.tiny_data()
spe = len(data.x_train) // recipe.batch_size

def trajectory(mesh):
    on = NamedSharding(mesh, P())
    graphdef, tx, state = t._tiny_state(recipe, 0)
    state, x, y, key = jax.device_put((state, data.x_train, data.y_train, jax.random.key(0)), on)
    perm = jax.device_put(train.epoch_permutation(key, 0, len(data.x_train)), on)
    step = train.make_train_steps(graphdef, tx, recipe, 1, spe, mesh)
    losses, hlo = [], ""
    for s in range(spe):
        args = jax.device_put((perm, key, np.int32(s), np.int32(s), np.float32(recipe.base_lr)), on)
        hlo = hlo or step.lower(state, x, y, *args).compile().as_text()
        state, m = step(state, x, y, *args)
        losses.append(float(np.asarray(m["loss"])[0]))
    return losses, "all-reduce" in hlo

meshes = []
make = train.make_train_steps
train.make_train_steps = lambda *a, **kw: meshes.append(a[5].devices.size) or make(*a, **kw)
res = train.train_and_evaluate(recipe, data, sys.argv[2], seed=0)
train.make_train_steps = make
run_loss = json.loads(open(sys.argv[2] + "/metrics.jsonl").readline())["train_loss"]
four, four_reduces = trajectory(data_mesh(8))
one, one_reduces = trajectory(Mesh(np.array(jax.devices()[:1]), ("data",)))
print(json.dumps(dict(four=four, one=one, four_reduces=four_reduces, one_reduces=one_reduces,
                      run_meshes=meshes, run_loss=run_loss, fallback=data_mesh(6).devices.size)))
"""


def test_data_parallel_on_4_devices_matches_1_device(tmp_path):
    """4 CPU devices (XLA_FLAGS must be set before jax starts, hence the subprocess): the batch
    split 4 ways gives the 1-device loss trajectory, and train_and_evaluate uses all 4."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(root / "tests"), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["four"]) == 8 and out["four"][0] != out["four"][-1]
    np.testing.assert_allclose(out["four"], out["one"], rtol=1e-4)
    assert out["four_reduces"] and not out["one_reduces"]  # the gradients really are summed over devices
    assert out["run_meshes"] == [4]  # train_and_evaluate split its batch of 8 over the 4 devices
    assert out["run_loss"] == pytest.approx(np.mean(out["one"]), rel=1e-4)
    assert out["fallback"] == 1 and "does not divide over the 4 devices" in proc.stderr


class _Steps:
    """A Progress that only counts the training steps it is told about."""

    def __init__(self):
        self.updates = 0

    def start(self, total_steps, description): ...
    def update(self, step, *, epoch, loss, img_per_s):
        self.updates += 1

    def epoch_end(self, record): ...
    def close(self): ...


def test_seeds_trained_at_once_equal_seeds_one_at_a_time(tmp_path):
    """train_and_evaluate_seeds: each seed's metrics.jsonl and final test error as when it trains
    alone (its own init, order and randomness); one stacked checkpoint for the group: running the
    finished group again trains nothing, and a group stopped mid-epoch resumes exactly."""
    recipe, data = tiny_recipe(seeds=(0, 1)), tiny_data()
    together_dirs = [tmp_path / "together" / f"seed_{s}" for s in (0, 1)]
    together = train.train_and_evaluate_seeds(recipe, data, together_dirs, [0, 1])
    alone = [train.train_and_evaluate(recipe, data, tmp_path / "alone" / f"seed_{s}", seed=s) for s in (0, 1)]

    def metrics(d):
        return [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]

    for s, (t, a) in enumerate(zip(together, alone)):
        assert t.seed == a.seed == s and t.steps == a.steps == 8 and t.run_dir == str(together_dirs[s])
        mt, ma = metrics(Path(t.run_dir)), metrics(Path(a.run_dir))
        assert [m["epoch"] for m in mt] == [1]
        np.testing.assert_allclose([m["train_loss"] for m in mt], [m["train_loss"] for m in ma], rtol=1e-5)
        np.testing.assert_allclose([m["test_loss"] for m in mt], [m["test_loss"] for m in ma], rtol=1e-5)
        assert t.test_error == a.test_error and t.test_loss == pytest.approx(a.test_loss, rel=1e-5)
        assert (Path(t.run_dir) / "params").is_dir()
    assert together[0].test_loss != together[1].test_loss
    assert [p.name.split("-", 1)[1] for p in (together_dirs[0] / "checkpoints").iterdir()] == ["seeds_0_1"]

    steps = _Steps()
    again = train.train_and_evaluate_seeds(recipe, data, together_dirs, [0, 1], progress=steps)
    assert steps.updates == 0 and [r.test_error for r in again] == [r.test_error for r in together]
    assert [len(metrics(d)) for d in together_dirs] == [1, 1]

    # Stopped mid-epoch (SIGINT at step 4), then run again: resumes and ends as the uninterrupted group.
    class StopAt4(_Steps):
        def update(self, step, **kw):
            if step == 4:
                os.kill(os.getpid(), signal.SIGINT)

    resumed_dirs = [tmp_path / "resumed" / f"seed_{s}" for s in (0, 1)]
    # The signal arrives while step 5 is already queued (one chunk in flight): the stop comes after it.
    with pytest.raises(train.Interrupted, match="seeds 0, 1: stopped by SIGINT at step 5"):
        train.train_and_evaluate_seeds(recipe, data, resumed_dirs, [0, 1], progress=StopAt4())
    resumed = train.train_and_evaluate_seeds(recipe, data, resumed_dirs, [0, 1])
    for t, r in zip(together, resumed):
        assert r.steps == 8 and r.test_loss == t.test_loss
        assert [m["train_loss"] for m in metrics(Path(r.run_dir))] == [m["train_loss"] for m in metrics(Path(t.run_dir))]


def test_reproduce_with_parallel_seeds_writes_each_seeds_run(tmp_path, monkeypatch):
    from nin_repro import reproduce as rep
    from nin_repro.recipe import PaperRow, Table, Variant

    _serve_tiny_data(monkeypatch)
    table = Table("tiny", "Tiny", "test", (PaperRow("NIN", 10.0, "", variant="nin"),), (Variant("nin", "NIN", tiny_recipe(seeds=(0, 1))),), tolerance_pp=1.0)
    together = []
    make = train.train_and_evaluate_seeds
    monkeypatch.setattr(rep, "train_and_evaluate_seeds", lambda r, data, dirs, seeds, *a, **kw: together.append(list(seeds)) or make(r, data, dirs, seeds, *a, **kw))
    md, _ = rep.reproduce(table, rep.Options(results_dir=tmp_path / "results", workdir=tmp_path / "runs", parallel_seeds=True))
    assert together == [[0, 1]] and md.exists()
    for s in (0, 1):
        run = tmp_path / "runs" / "tiny" / "nin" / f"seed_{s}"
        record = json.loads((run / "run.json").read_text())
        assert record["seed"] == s and record["result"]["run_dir"] == str(run) and (run / "params").is_dir()
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    together.clear()
    plateau = Table("tiny", "Tiny", "test", table.rows, (Variant("nin", "NIN", tiny_recipe(seeds=(0, 1), schedule="plateau", plateau_max_epochs=1)),), tolerance_pp=1.0)
    rep.reproduce(plateau, rep.Options(results_dir=tmp_path / "results", workdir=tmp_path / "plateau", parallel_seeds=True))
    assert together == [[0], [1]]  # the plateau rule: one seed at a time


@pytest.mark.parametrize("parallel", [True, False])
def test_a_stalled_seed_is_retried_and_the_table_says_so(tmp_path, monkeypatch, parallel):
    """Seed 1's first try is built dead; it stalls, the others carry on, it is retried from
    run_key(1, 1) in its own folder, and the row and run.json record both attempts. A seed dead on
    every try is reported as stalled, and the table is still written."""
    import dataclasses

    from nin_repro import reproduce as rep
    from nin_repro.recipe import PaperRow, Table, Variant

    _serve_tiny_data(monkeypatch)
    original = train.init_model
    dead_tries = {(1, 0), (2, 0), (2, 1)}  # seed 1 dies once; seed 2 on both of its 2 attempts

    def init(r, seed, attempt=0):
        model = original(r, seed, attempt)
        # Dead tries: every class map killed; the others: alive maps (a positive bias under the ReLU).
        model.blocks[-1].cccp_b.bias[...] = jnp.full((4,), -100.0 if (seed, attempt) in dead_tries else 1.0)
        return model

    monkeypatch.setattr(train, "init_model", init)
    recipe = tiny_recipe(seeds=(0, 1, 2), epochs=3, dead_steps=5, attempts=2, model=dataclasses.replace(TINY, final_relu=True))
    table = Table("tiny", "Tiny", "test", (PaperRow("NIN", 10.0, "", variant="nin"),), (Variant("nin", "NIN", recipe),), tolerance_pp=1.0)
    md, js = rep.reproduce(table, rep.Options(results_dir=tmp_path / "results", workdir=tmp_path / "runs", parallel_seeds=parallel))
    variant = json.loads(js.read_text())["variants"][0]
    assert variant["seeds"] == [0, 1] and variant["stalled_seeds"] == [2] and variant["total_attempts"] == 5
    assert variant["attempt_notes"] == [
        "seed 1: 2 attempts (attempt 0 stalled at step 4: 4/4 class maps dead (at least one dead for 5 steps in a row))",
        "seed 2: stalled on all 2 attempts (attempt 0 stalled at step 4: 4/4 class maps dead (at least one dead for 5 steps in a row); "
        "attempt 1 stalled at step 4: 4/4 class maps dead (at least one dead for 5 steps in a row)); not in the mean",
    ]
    assert "seed 1: 2 attempts (attempt 0 stalled at step 4" in md.read_text()
    assert rep.stalled_seeds(js) == ["nin: seed(s) 2"]
    runs = tmp_path / "runs" / "tiny" / "nin"
    record = json.loads((runs / "seed_1-attempt_1" / "run.json").read_text())
    assert record["key"] == "fold_in(key(1), 1001)" and [a["ended"] for a in record["attempts"]][1] == "finished"
    assert record["attempts"][0]["ended"].startswith("stalled at step 4") and record["result"]["steps"] == 24
    assert json.loads((runs / "seed_0" / "run.json").read_text())["result"]["steps"] == 24  # seed 0 was never stopped


def test_a_run_of_another_recipe_never_overwrites_the_tables_own_run_folder(tmp_path, monkeypatch):
    """The table's recipe, then the same command shortened (--epochs): the shortened run trains in
    its own folder, the first run's metrics and parameters are untouched, each table cites its own."""
    from nin_repro import reproduce as rep
    from nin_repro.recipe import PaperRow, Table, Variant

    _serve_tiny_data(monkeypatch)
    table = Table("tiny", "Tiny", "test", (PaperRow("NIN", 10.0, "", variant="nin"),), (Variant("nin", "NIN", tiny_recipe(epochs=2)),), tolerance_pp=1.0)
    full_md, full_js = rep.reproduce(table, rep.Options(results_dir=tmp_path / "results", workdir=tmp_path / "runs"))
    own = tmp_path / "runs" / "tiny" / "nin" / "seed_0"
    before = (own / "metrics.jsonl").read_text()
    assert json.loads(full_js.read_text())["variants"][0]["run_dirs"] == [str(own)]
    short_md, short_js = rep.reproduce(table, rep.Options(results_dir=tmp_path / "results", workdir=tmp_path / "runs", epochs=1))
    (cited,) = json.loads(short_js.read_text())["variants"][0]["run_dirs"]
    assert Path(cited).parent.name.startswith("nin@") and Path(cited).parent.parent == own.parent.parent
    assert (own / "metrics.jsonl").read_text() == before and len(before.splitlines()) == 2
    # (Both runs are shortened here, so the second table replaces the first: it cites its own folder.)
    assert short_md == full_md and json.loads(full_js.read_text())["variants"][0]["run_dirs"] == [cited]


def test_rows_runs_only_the_named_rows_and_shows_the_others_as_not_run(tmp_path, monkeypatch):
    """--rows b: only b trains; a's paper row says "not run", never lost; a run of some rows does
    not replace a full table (it goes to partial/)."""
    from nin_repro import reproduce as rep
    from nin_repro.recipe import PaperRow, Table, Variant

    _serve_tiny_data(monkeypatch)
    rows = (PaperRow("A", 10.0, "", variant="a"), PaperRow("B", 11.0, "", variant="b"))
    table = Table("tiny", "Tiny", "test", rows, (Variant("a", "A", tiny_recipe()), Variant("b", "B", tiny_recipe())), tolerance_pp=1.0)
    assert table.select_rows(" b ,") == ("b",) and table.select_rows("b,a") == ("a", "b")
    opts = rep.Options(results_dir=tmp_path / "results", workdir=tmp_path / "runs")
    md, js = rep.reproduce(table, opts, variants=table.select_rows("b"))
    written = json.loads(js.read_text())
    assert [v["key"] for v in written["variants"]] == ["b"] and written["full_run"] is False
    assert not (tmp_path / "runs" / "tiny" / "a").exists() and (tmp_path / "runs" / "tiny" / "b" / "seed_0" / "run.json").exists()
    line_a = next(line for line in md.read_text().splitlines() if line.startswith("| **A**"))
    assert "not run" in line_a


def test_the_vmapped_and_the_seed_by_seed_gradients_agree():
    """train.grads_over_seeds (GPU/TPU: one vmapped program) and train.grads_seed_by_seed (XLA:CPU)
    give each seed its own loss and gradient."""
    from flax import nnx

    recipe = tiny_recipe()
    models = [train.init_model(recipe, s) for s in (0, 1)]
    graphdef = nnx.split(models[0], nnx.Param)[0]
    params_K = jax.tree.map(lambda *a: jnp.stack(a), *(nnx.split(m, nnx.Param)[1] for m in models))
    x_K = jax.random.normal(jax.random.key(0), (2, 8, *TINY.input_hw, TINY.in_channels))
    y_K = jnp.array([[0, 1, 2, 3] * 2, [3, 2, 1, 0] * 2])
    keys = jnp.stack([jax.random.key(1), jax.random.key(2)])
    loss_fn = train.make_loss_fn(graphdef, recipe)
    (_, (loss_v, _)), grads_v = jax.jit(train.grads_over_seeds(loss_fn))(params_K, x_K, y_K, keys)
    (_, (loss_s, _)), grads_s = jax.jit(train.grads_seed_by_seed(loss_fn))(params_K, x_K, y_K, keys)
    np.testing.assert_allclose(loss_v, loss_s, rtol=1e-5)
    assert loss_v.shape == (2,) and loss_v[0] != loss_v[1]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads_v, grads_s)
