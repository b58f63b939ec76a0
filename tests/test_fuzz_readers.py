"""Property-based fuzzing of the original-format readers: random and mutated bytes either give
arrays that pass the dtype/shape/label checks or raise the project's DataError, nothing else."""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nin_repro.data import validate_split
from nin_repro.data.readers import read_cifar10_python, read_mnist_idx, read_svhn_file
from nin_repro.errors import DataError
from tests.test_data import write_cifar10, write_mnist
from tests.test_svhn import _write_mat

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _mutate(good: bytes, data) -> bytes:
    """Cut, overwrite a few bytes, append junk, or replace everything with random bytes."""
    kind = data.draw(st.sampled_from(["cut", "flip", "append", "random"]))
    if kind == "random":
        return data.draw(st.binary(max_size=4096))
    b = bytearray(good)
    if kind == "cut":
        return bytes(b[: data.draw(st.integers(0, max(0, len(b) - 1)))])
    if kind == "append":
        return bytes(b) + data.draw(st.binary(min_size=1, max_size=64))
    for _ in range(data.draw(st.integers(1, 4))):
        b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    return bytes(b)


def _check(arrays, num_classes: int) -> None:
    x_tr, y_tr, x_te, y_te = arrays
    validate_split(x_tr, y_tr, num_classes=num_classes, image_shape=None, what="train")
    validate_split(x_te, y_te, num_classes=num_classes, image_shape=x_tr.shape[1:], what="test")


class _Folder:
    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp())
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@FUZZ
@given(data=st.data(), name=st.sampled_from(["data_batch_1", "test_batch"]))
def test_cifar10_pickles(data, name):
    with _Folder() as root:
        folder = root / "cifar-10-batches-py"
        write_cifar10(folder, n=2)
        (folder / name).write_bytes(_mutate((folder / name).read_bytes(), data))
        try:
            _check(read_cifar10_python(folder), 10)
        except DataError as e:
            assert "\n" not in str(e)


@FUZZ
@given(data=st.data(), name=st.sampled_from(["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte.gz"]))
def test_mnist_idx(data, name):
    with _Folder() as root:
        write_mnist(root, n_train=4, n_test=3)
        if name.endswith(".gz"):  # one file compressed, so the gzip layer is fuzzed too
            raw = (root / name[:-3]).read_bytes()
            (root / name[:-3]).unlink()
            (root / name).write_bytes(gzip.compress(raw))
        (root / name).write_bytes(_mutate((root / name).read_bytes(), data))
        try:
            _check(read_mnist_idx(root), 10)
        except DataError as e:
            assert "\n" not in str(e)


@FUZZ
@given(data=st.data())
def test_svhn_mat_cut_or_random(data):
    # Byte flips inside a valid .mat can crash scipy's loadmat in C (a segfault no Python code
    # can catch, seen once in 600 flips), so this fuzzes cuts, appended junk and random files.
    with _Folder() as root:
        path = root / "test_32x32.mat"
        rng = np.random.default_rng(0)
        _write_mat(path, rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), np.array([0, 5, 9]))
        good = path.read_bytes()
        kind = data.draw(st.sampled_from(["cut", "append", "random"]))
        if kind == "cut":
            bad = good[: data.draw(st.integers(0, len(good) - 1))]
        elif kind == "append":
            bad = good + data.draw(st.binary(min_size=1, max_size=64))
        else:
            bad = data.draw(st.binary(max_size=4096))
        path.write_bytes(bad)
        try:
            x, y = read_svhn_file(path)
            validate_split(x, y, num_classes=10, image_shape=(32, 32, 3), what="svhn")
        except DataError as e:
            assert "\n" not in str(e)
