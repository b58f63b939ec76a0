"""load_tfds against tensorflow-datasets' own mock (random examples, no download, needs TensorFlow).

The mocked labels differ between tfds versions and train == test under the mock: only shapes,
dtypes and label ranges are checked, never particular values.
"""

from __future__ import annotations

import numpy as np
import pytest

from nin_repro.data import load_dataset
from nin_repro.data.tfds_source import TfdsDataMissing, load_tfds, load_tfds_splits
from nin_repro.errors import DataError


@pytest.fixture(scope="module", autouse=True)
def tfds():
    """TensorFlow is imported by the worker that runs these tests only (at collection it cost every
    xdist worker 3 s), and skips them where it is not installed."""
    pytest.importorskip("tensorflow")
    return pytest.importorskip("tensorflow_datasets")


N = 7  # not a multiple of anything tfds batches by


def _check(arrays, shape, num_classes, n=N):
    x_train, y_train, x_test, y_test = arrays
    for x, y in ((x_train, y_train), (x_test, y_test)):
        assert x.shape == (n, *shape) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int32
        assert 0 <= y.min() and y.max() < num_classes


@pytest.mark.parametrize("download", [True, False])
def test_cifar10_mock(download, tfds):
    with tfds.testing.mock_data(num_examples=N):
        _check(load_tfds("cifar10", download=download), (32, 32, 3), 10)


def test_mnist_mock(tfds):
    with tfds.testing.mock_data(num_examples=N):
        _check(load_tfds("mnist"), (28, 28, 1), 10)


def test_cifar100_mock_has_fine_labels(tfds):
    with tfds.testing.mock_data(num_examples=40):
        arrays = load_tfds("cifar100")
    _check(arrays, (32, 32, 3), 100, n=40)


def test_svhn_extra_split_mock(tfds):
    with tfds.testing.mock_data(num_examples=N):
        splits = load_tfds_splits("svhn", ("train", "extra"))
    assert sorted(splits) == ["extra", "train"]
    x, y = splits["extra"]
    assert x.shape == (N, 32, 32, 3) and y.dtype == np.int32 and y.max() < 10


def test_unknown_split_and_dataset():
    with pytest.raises(DataError, match="extra"):
        load_tfds_splits("cifar10", ("extra",))
    with pytest.raises(DataError, match="imagenet"):
        load_tfds("imagenet")


def test_load_dataset_through_mocked_tfds_is_cached(tmp_path, tfds):
    with tfds.testing.mock_data(num_examples=N):
        ds = load_dataset("mnist", cache_dir=tmp_path / "cache", download=False)
    assert ds.source == "tfds:mnist" and ds.x_train.shape == (N, 28, 28, 1)
    again = load_dataset("mnist", cache_dir=tmp_path / "cache", download=False)
    assert again.source.startswith("cache:")
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_not_prepared_without_download(tmp_path):
    """Real tfds (no mock), empty data dir, download=False: its AssertionError becomes our hint."""
    with pytest.raises(TfdsDataMissing) as err:
        load_tfds("cifar10", tfds_data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and "cifar-10-batches-py" in msg and "--download" in msg


def test_failed_download_becomes_a_data_error(tmp_path, monkeypatch, tfds):
    import requests

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(TfdsDataMissing) as err:
        load_tfds("mnist", tfds_data_dir=tmp_path, download=True)
    msg = str(err.value)
    assert "\n" not in msg and "ConnectionError" in msg and "train-images-idx3-ubyte" in msg


def test_missing_preparation_dependency_is_an_install_hint(tmp_path, monkeypatch, tfds):
    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'importlib_resources'", name="importlib_resources")

    monkeypatch.setattr(tfds, "load", missing)
    with pytest.raises(DataError, match=r"importlib_resources.*nin-repro\[download\]"):
        load_tfds("mnist", tfds_data_dir=tmp_path)
