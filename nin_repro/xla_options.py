"""XLA compiler options for our compiled programs, measured on the CPU and applied there only
(other backends compile with their defaults). Two kinds of program:

- the ones that run many times (the training step, the evaluation): ``jit_repeated``;
- the ones that run once per seed (initialisation, the optimizer's first state, the init study's
  signal scales): ``jit_run_once``.

Both pin their level explicitly, so a global ``jax_disable_most_optimizations`` (the test suite sets
it: most of the suite's time is compiling small programs that run once) leaves training and
evaluation at the speed users get.
"""

from __future__ import annotations

from typing import Callable

import jax

# XLA:CPU's default backend level (3) compiles a training step in about twice the time of level 2
# and runs it no faster: measured on the 2-core CPU, one step per call, compile / ms a step, level 3
# vs 2: the smoke CIFAR-10 net 2.3 s / 18 ms vs 1.1 s / 18 ms; the demo net 1.8-2.0 s / 12 ms vs
# 1.1 s / 13 ms; the MNIST table's net at full width, batch 128, 1.7-1.9 s / 226-232 ms vs 1.2 s /
# 232-238 ms (20 steps each, within run-to-run noise); `nin-repro bench`, batch 128, idle CPU: the
# MNIST net 580 vs 550-570 img/s, the CIFAR-10 net 126 vs 127 (compile 2.1 vs 1.6 s, 2.8 vs 2.3 s;
# ours / PyTorch 2.13's then 2.25x for the MNIST net under load; 1.23x on an idle CPU at 787fc95,
# results/bench-cpu-mnist.md). Evaluation, 1,000 images in batches of 250, level
# 3 / 2 / 0, img/s: the MNIST table's net 2,468 / 2,407 / 1,360, the CIFAR-10 net 534 / 530 / 345,
# the demo net 5,567 / 5,384 / 3,359 (compile 0.2-0.35 s at every level). Levels 1 and 2 compile
# equally fast; level 0 runs the training step 2.6x slower.
REPEATED = {"xla_backend_optimization_level": 2}

# Built op by op, every parameter shape of an initialisation compiled its own random-number program.
# On the 2-core CPU (six networks: MNIST, CIFAR-10, SVHN at full and 1/4 width, no compilation
# cache, under load): 44 s op by op, 40 s as one optimised program, 14 s as one program at O0. The
# values are the op-by-op ones to within a float32 ulp (3e-8 for N(0, 0.05)).
RUN_ONCE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def on_cpu_only(options: dict) -> dict | None:
    """``options`` on the CPU, where they were measured; None (the defaults) elsewhere."""
    return options if jax.default_backend() == "cpu" else None


def jit_repeated(fn: Callable, **jit_kwargs) -> Callable:
    """``jax.jit`` for a program that runs many times (training steps, evaluation)."""
    return jax.jit(fn, compiler_options=on_cpu_only(REPEATED), **jit_kwargs)


def jit_run_once(fn: Callable, **jit_kwargs) -> Callable:
    """``jax.jit`` for a program that runs once per seed: compiled without LLVM's optimisations."""
    return jax.jit(fn, compiler_options=on_cpu_only(RUN_ONCE), **jit_kwargs)
