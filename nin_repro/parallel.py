"""Data parallelism with ``jax.sharding``: one mesh axis, 'data', over every visible device.

Each step's batch is split over the axis; the dataset, parameters and optimizer state are
replicated, and XLA adds the gradient all-reduce. One device is the same code on a 1-device mesh.
Several hosts: call ``jax.distributed.initialize()`` first (README, "Several hosts");
``jax.devices()`` then lists every host's devices and the mesh spans them.
"""

from __future__ import annotations

import functools
import sys

import jax
import numpy as np
from jax.sharding import Mesh


@functools.lru_cache(maxsize=None)  # one mesh (and one message) per batch size and process
def data_mesh(batch_size: int) -> Mesh:
    """A 'data' mesh over all devices, or over the first one when the batch does not divide."""
    devices = jax.devices()
    if len(devices) > 1 and batch_size % len(devices):
        print(
            f"note: batch size {batch_size} does not divide over the {len(devices)} devices: training on 1 device "
            f"(pass a --batch-size divisible by {len(devices)} to use them all)",
            file=sys.stderr,
        )
        devices = devices[:1]
    return Mesh(np.array(devices), ("data",))
