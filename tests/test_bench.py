import dataclasses
import json

import numpy as np
import pytest

from nin_repro.cli import main
from nin_repro.models import BlockSpec
from nin_repro.recipe import load_experiment

pytestmark = pytest.mark.usefixtures("tiny_runs_compile_at_o0")  # tiny runs: conftest.py


@pytest.mark.parametrize("table, macs", [("cifar10", 222_486_528), ("cifar100", 223.6e6), ("mnist", 50.7e6)])
def test_macs_from_layer_shapes_match_the_paper_facts(table, macs):
    # docs/paper-notes.md, "Architecture": exact for CIFAR-10, rounded to 0.1 M for the others.
    got = load_experiment(table).RECIPE.model.forward_macs()
    assert got == macs if isinstance(macs, int) else abs(got - macs) < 0.05e6


def test_bench_rejects_unknown_dtype(capsys):
    assert main(["bench", "--dtype", "fp8"]) == 2
    assert "unknown --dtype" in capsys.readouterr().err


ONE_BLOCK = dict(blocks=(BlockSpec(3, (4, 4, 10), init_std=None, pool="none", dropout=0.0),), dropout_form="author", in_channels=1, input_hw=(8, 8), num_classes=10, head="gap")


def test_bench_numbers_of_one_mlpconv_block_worked_out_by_hand(tmp_path, monkeypatch):
    """One mlpconv block on 8x8x1 images: a 3x3 conv 1 -> 4, 1x1 4 -> 4, 1x1 4 -> 10, no pool, GAP.
    MACs per image: 64 positions x (9*1*4 + 4*4 + 4*10 = 92) = 5,888; FLOPs: 11,776 forward,
    35,328 training (3 x). Activations: 64 input + 64 x 18 = 1,216 values, float32: 19,456 bytes per
    training image (4 accesses), 9,728 per evaluated one (2). Two seeds in one vmapped step, batch
    16, each call timed at 20 ms; the device described as 1e-4 TFLOP/s and 0.05 GB/s:
    - train: 2 x 16 / 0.02 s = 1,600 img/s in all, 800 per model; 1,600 x 35,328 = 5.65248e-5 TFLOP/s
      = 56.5248 % of peak; ceilings: compute 1e8 / 35,328 = 2,830.6 img/s, memory 5e7 / 19,456
      = 2,569.9 img/s -> memory-bound, 62.2592 % of it; HBM traffic 1,600 x 19,456 = 0.0311296 GB/s.
    - eval (one model): 800 img/s; 800 x 11,776 = 9.4208e-6 TFLOP/s = 9.4208 %; memory ceiling
      5e7 / 9,728 = 5,139.8 img/s (compute 8,491.8) -> memory-bound, 15.5648 %."""
    import dataclasses

    from nin_repro import bench
    from nin_repro.models import NINConfig

    recipe = dataclasses.replace(load_experiment("demo").RECIPE, model=NINConfig(**ONE_BLOCK))
    assert recipe.model.forward_macs() == 5_888 and recipe.model.activation_elements() == 1_216
    monkeypatch.setattr(bench, "_time", lambda fn, steps, warmup=True: 0.02)  # the compiled step still runs once (compile + first call)
    train, evaluate = bench.bench_recipe(recipe, batch_size=16, dtype="float32", steps=1, peak_tflops=1e-4, seeds=2, hbm_gb_s=0.05)
    assert (train.models, evaluate.models) == (2, 1)
    assert train.img_per_s == pytest.approx(1600) and train.img_per_s_per_model == pytest.approx(800) and train.ms_per_step == pytest.approx(20)
    assert train.tflops == pytest.approx(5.65248e-5) and train.pct_of_peak == pytest.approx(56.5248)
    assert train.compute_ceiling_img_s == pytest.approx(2830.6, abs=0.1) and train.memory_ceiling_img_s == pytest.approx(2569.9, abs=0.1)
    assert train.bound == "memory" and train.pct_of_ceiling == pytest.approx(62.2592) and train.hbm_gb_s == pytest.approx(0.0311296)
    assert evaluate.img_per_s == pytest.approx(800) and evaluate.tflops == pytest.approx(9.4208e-6) and evaluate.pct_of_peak == pytest.approx(9.4208)
    assert evaluate.bound == "memory" and evaluate.pct_of_ceiling == pytest.approx(15.5648)
    prov = {"device": {"kind": "cpu", "platform": "cpu"}, "versions": {"jax": "x"}, "commit": "c", "date": "d"}
    bench.write_bench([train, evaluate], tmp_path / "bench.md", "demo", prov)
    assert (
        "| train | float32 | 16 | 2 | threefry2x32 | mask | 1 | 1,600 | 800 | 20.00 | 0.000 | 56.5 | 0.0 | 2,831 | 2,570 | 62.3 (memory) |" in (tmp_path / "bench.md").read_text()
    )


def test_the_cifar10_roofline_from_layer_shapes():
    """1.335 GFLOP per training image (3 x forward); activations 671,360 values per image, 4 accesses
    of 4 bytes each per training step -> 10.7 MB; on an H100 (989 TFLOP/s bf16, 3.35 TB/s) the
    memory ceiling is the lower one for bf16 training."""
    from nin_repro.bench import roofline

    model = load_experiment("cifar10").RECIPE.model
    assert model.activation_elements() == 3072 + 32 * 32 * (192 + 160 + 96) + 16 * 16 * 96 + 16 * 16 * (192 * 3) + 8 * 8 * 192 + 8 * 8 * (192 + 192 + 10)
    roof = roofline(model, "train", "float32", 494.7, 3.35e12)
    assert roof.flops == 6 * 222_486_528 and roof.bytes == 4 * 4 * model.activation_elements()
    bf16 = roofline(model, "train", "bfloat16", 989.0, 3.35e12)
    assert bf16.bound == "memory" and bf16.ceiling_img_s == pytest.approx(3.35e12 / (8 * model.activation_elements()))
    assert roofline(model, "train", "float32", None, None).bound == "unknown"


def test_bench_reports_both_ceilings_when_the_device_is_described(tmp_path):
    assert main(["bench", "--table", "demo", "--batch-size", "16", "--steps", "1", "--peak-tflops", "1.0", "--hbm-gb-s", "100", "--results-dir", str(tmp_path)]) == 0
    train = next(r for r in json.loads((tmp_path / "bench.json").read_text())["results"] if r["what"] == "train")
    lower = min(train["compute_ceiling_img_s"], train["memory_ceiling_img_s"])
    assert train["pct_of_ceiling"] == pytest.approx(100 * train["img_per_s"] / lower)
    assert train["bound"] == ("memory" if train["memory_ceiling_img_s"] < train["compute_ceiling_img_s"] else "compute")


def test_bench_times_the_scanned_call_that_gpu_training_makes(monkeypatch):
    # Forced to the GPU/TPU path on this CPU: 6 steps as one scanned call (what an epoch is there),
    # timed as 6 steps; the default on a CPU is one step per call, as training runs it.
    import dataclasses

    import nin_repro.train as train
    from nin_repro.bench import bench_recipe
    from nin_repro.models import BlockSpec

    recipe = load_experiment("demo").RECIPE
    blocks = (BlockSpec(3, (6, 6, 6), init_std=None, pool="max", dropout=0.5), BlockSpec(3, (6, 6, 10), init_std=None, pool="none", dropout=0.0))
    tiny = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, blocks=blocks, input_hw=(8, 8)))
    made = []
    make = train.make_train_steps
    monkeypatch.setattr(train, "make_train_steps", lambda *a, **kw: made.append(a[3]) or make(*a, **kw))
    scanned, _ = bench_recipe(tiny, batch_size=8, dtype="float32", steps=6, steps_per_call=6)
    per_step, _ = bench_recipe(tiny, batch_size=8, dtype="float32", steps=6)
    assert made == [6, 1] and (scanned.steps_per_call, per_step.steps_per_call) == (6, 1)
    assert scanned.img_per_s > 0 and per_step.img_per_s > 0


def test_bench_compares_random_generators_and_the_recipe_records_its_own(tmp_path, capsys):
    # --rng: the dropout masks' generator is a recorded recipe field; another one gives other streams.
    from nin_repro.train import init_model

    args = ["bench", "--table", "demo", "--steps", "1", "--batch-size", "8", "--rng", "threefry2x32", "--rng", "rbg", "--pool-grad", "xla", "--pool-grad", "mask"]
    assert main([*args, "--results-dir", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [(r["what"], r["rng_impl"], r["pool_grad"]) for r in rows] == [
        ("train", "threefry2x32", "xla"),
        ("eval", "threefry2x32", "xla"),
        ("train", "threefry2x32", "mask"),
        ("train", "rbg", "xla"),
        ("train", "rbg", "mask"),
    ]
    assert main(["bench", "--table", "demo", "--rng", "mersenne", "--results-dir", str(tmp_path)]) == 2
    assert "unknown --rng 'mersenne'" in capsys.readouterr().err
    assert main(["bench", "--table", "demo", "--pool-grad", "fast", "--results-dir", str(tmp_path)]) == 2
    assert "unknown --pool-grad 'fast'" in capsys.readouterr().err
    recipe = load_experiment("demo").RECIPE
    a, b = (init_model(dataclasses.replace(recipe, rng_impl=impl), 0) for impl in ("threefry2x32", "rbg"))
    assert not np.allclose(np.asarray(a.blocks[0].conv.kernel[...]), np.asarray(b.blocks[0].conv.kernel[...]))


def test_bench_peer_torch_times_the_same_network_interleaved(tmp_path, capsys):
    """--peer torch: the peer builds the table's network from its config (the same parameter count),
    both sides are timed, bench prints and records ours / the peer's."""
    pytest.importorskip("torch")
    import sys

    from nin_repro.models import count_params
    from nin_repro.peer import PEER_SCRIPT
    from nin_repro.recipe import load_experiment
    from nin_repro.train import init_model

    sys.path.insert(0, str(PEER_SCRIPT.parent))
    try:
        from peer_torch import nin_torch
    finally:
        sys.path.remove(str(PEER_SCRIPT.parent))
    recipe = load_experiment("demo").TABLE.variants[0].recipe
    assert sum(p.numel() for p in nin_torch(recipe.model).parameters()) == count_params(init_model(recipe, 0))
    args = ["bench", "--table", "demo", "--steps", "1", "--batch-size", "8", "--peer", "torch", "--peer-rounds", "2", "--results-dir", str(tmp_path)]
    assert main(args) == 0
    assert "ours vs peer: batch 8, 2 interleaved rounds, peer torch" in capsys.readouterr().out
    (peer,) = json.loads((tmp_path / "bench.json").read_text())["peer"]
    assert peer["rounds"] == 2 and peer["train_ratio"] == pytest.approx(peer["ours_train_img_s"] / peer["peer_train_img_s"])
    assert min(peer["ours_train_img_s"], peer["peer_train_img_s"], peer["ours_eval_img_s"], peer["peer_eval_img_s"]) > 0
    assert "Against a peer" in (tmp_path / "bench.md").read_text()


def test_bench_rejects_an_unknown_peer(tmp_path, capsys):
    assert main(["bench", "--table", "demo", "--peer", "tensorflow", "--results-dir", str(tmp_path)]) == 2
    assert "unknown --peer 'tensorflow': choose one of torch" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()
