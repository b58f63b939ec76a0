"""A PyTorch peer for `nin-repro bench --peer torch`: the same NIN, timed the same way, on the same CPU.

Not part of the package and never one of its dependencies: it runs only where torch is installed
(``pip install torch``). The network is built from the table's own model config (widths, kernels,
Caffe ceil-mode 3x3/2 pools, dropout 0.5 after the pooled blocks, ReLUs, global average pooling),
so it cannot drift from ``experiments/<table>.py``. Training: plain eager PyTorch, NCHW, float32,
SGD momentum 0.9 with weight decay, cross-entropy, on synthetic data (as bench's own rows);
evaluation: the same network in eval mode under ``torch.inference_mode``.

    python bench/peer_torch.py --table mnist --batch-size 128 --steps 4 --threads 2

prints one JSON object: {"peer": "torch", "version", "threads", "train_img_s", "eval_img_s", ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the nin_repro of this checkout


def nin_torch(config) -> nn.Sequential:
    """The NIN of a ``NINConfig`` in torch layers (GAP head only, as every table's main network)."""
    if config.head != "gap":
        raise SystemExit(f"peer_torch: only the GAP head is built, not {config.head!r}")
    layers, cin = [], config.in_channels
    last = len(config.blocks) - 1
    for i, spec in enumerate(config.blocks):
        c0, c1, c2 = spec.widths
        layers += [nn.Conv2d(cin, c0, spec.kernel, padding=spec.kernel // 2), nn.ReLU(), nn.Conv2d(c0, c1, 1), nn.ReLU(), nn.Conv2d(c1, c2, 1)]
        if config.final_relu or i != last:
            layers.append(nn.ReLU())
        if spec.pool == "max":
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        elif spec.pool == "avg":
            layers.append(nn.AvgPool2d(3, 2, ceil_mode=True))
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        cin = c2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def programs(table: str, batch_size: int, threads: int):
    """``(train_step, eval_step)`` of the table's network on one synthetic batch; each call runs one
    step and waits for it (``.item()``), as bench's own calls do."""
    from nin_repro.recipe import load_experiment

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    recipe = load_experiment(table).TABLE.variants[0].recipe
    config = recipe.model
    model = nin_torch(config)
    h, w = config.input_hw
    x = torch.randn(batch_size, config.in_channels, h, w)
    y = torch.randint(0, config.num_classes, (batch_size,))
    opt = torch.optim.SGD(model.parameters(), lr=recipe.base_lr, momentum=0.9, weight_decay=recipe.weight_decay)
    loss_fn = nn.CrossEntropyLoss()

    def train_step():
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    def eval_step():
        model.eval()
        with torch.inference_mode():
            return model(x).argmax(1).sum().item()

    return train_step, eval_step


def _timed(fn, steps: int) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls, after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def measure(table: str, batch_size: int, steps: int, threads: int) -> dict:
    train_step, eval_step = programs(table, batch_size, threads)
    train_s, eval_s = _timed(train_step, steps), _timed(eval_step, steps)
    return {
        "peer": "torch",
        "version": torch.__version__,
        "threads": threads,
        "table": table,
        "batch_size": batch_size,
        "steps": steps,
        "train_img_s": batch_size / train_s,
        "eval_img_s": batch_size / eval_s,
    }


def serve(table: str, batch_size: int, threads: int) -> None:
    """For bench, which interleaves its own steps with ours (the same background load on both): prints
    a ready line, then answers each stdin line "train" or "eval" with the seconds one step took."""
    steps = dict(zip(("train", "eval"), programs(table, batch_size, threads)))
    for fn in steps.values():
        fn()  # warm-up
    print(json.dumps({"ready": True, "peer": "torch", "version": torch.__version__, "threads": threads}), flush=True)
    for line in sys.stdin:
        t0 = time.perf_counter()
        steps[line.strip()]()
        print(time.perf_counter() - t0, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="cifar10")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--serve", action="store_true", help="answer 'train' / 'eval' lines on stdin with one step's seconds (bench --peer)")
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.table, args.batch_size, args.threads)
        return 0
    print(json.dumps(measure(args.table, args.batch_size, args.steps, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
