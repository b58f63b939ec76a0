"""Datasets as uint8 NHWC images + int32 labels, split train/test.

Sources are tried in a fixed order and the one used is named in the run record:
(1) the project's ``.npz`` cache, (2) original files in ``--data-dir``,
(3) tensorflow-datasets (download + prepare, imported lazily), converted once into the cache.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nin_repro.errors import DataError


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # uint8 (N, H, W, C)
    y_train: np.ndarray  # int32 (N,)
    x_test: np.ndarray  # uint8 (M, H, W, C)
    y_test: np.ndarray  # int32 (M,)
    num_classes: int
    class_names: tuple[str, ...]
    source: str  # e.g. "cache:/path/cifar10.npz", "files:/data/cifar-10-batches-py", "tfds", "synthetic"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def validate_split(x: np.ndarray, y: np.ndarray, *, num_classes: int, image_shape: tuple[int, ...] | None, what: str) -> None:
    """Raise DataError unless x is uint8 (N, H, W, C), y is int32 (N,) with labels in [0, num_classes)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        raise DataError(f"{what}: expected uint8 images of shape (N, H, W, C), got {getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
    if image_shape is not None and tuple(x.shape[1:]) != tuple(image_shape):
        raise DataError(f"{what}: expected images of shape {tuple(image_shape)}, got {tuple(x.shape[1:])}")
    if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.shape != (x.shape[0],):
        raise DataError(f"{what}: expected {x.shape[0]} int32 labels, got {getattr(y, 'dtype', type(y))} {getattr(y, 'shape', '')}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{what}: labels must lie in [0, {num_classes}), found [{y.min()}, {y.max()}]")


def validate_dataset(ds: Dataset) -> Dataset:
    validate_split(ds.x_train, ds.y_train, num_classes=ds.num_classes, image_shape=None, what=f"{ds.name} train")
    validate_split(ds.x_test, ds.y_test, num_classes=ds.num_classes, image_shape=ds.image_shape, what=f"{ds.name} test")
    return ds
