"""Datasets through tensorflow-datasets (download + prepare, then read into numpy).

tensorflow_datasets (and through it TensorFlow) is imported inside the functions only: training
never imports TensorFlow, and the package works without the 'download' extra installed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any

import numpy as np

from nin_repro.data import validate_split
from nin_repro.errors import DataError

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

INSTALL_HINT = "install the download extra: pip install 'nin-repro[download]' or put the original files in --data-dir"
# Records are read in chunks and concatenated. batch_size=-1 would be one tf.function call, but
# when the split sizes are unknown (as under tfds.testing.mock_data) tfds asks for a batch of
# sys.maxsize and TensorFlow aborts the whole process (std::length_error in vector::reserve).
_CHUNK = 10_000


@dataclasses.dataclass(frozen=True)
class TfdsBuilder:
    builder: str  # tfds builder name
    title: str  # for messages
    splits: tuple[str, ...]  # all splits the builder has
    num_classes: int
    image_shape: tuple[int, int, int]
    # Put each split back into the original file order by the records' ``id`` feature
    # ("train_000123", zero-padded, so string order is index order). tfds stores records in a
    # stable hash-shuffled order; file order makes a split computed on them (SVHN's validation
    # set) the same as one computed on the original files.
    order_by_id: bool = False


TFDS_BUILDERS: dict[str, TfdsBuilder] = {
    "cifar10": TfdsBuilder("cifar10", "CIFAR-10", ("train", "test"), 10, (32, 32, 3)),
    # supervised_keys = (image, label) and 'label' is the fine label (100 classes).
    "cifar100": TfdsBuilder("cifar100", "CIFAR-100", ("train", "test"), 100, (32, 32, 3)),
    "mnist": TfdsBuilder("mnist", "MNIST", ("train", "test"), 10, (28, 28, 1)),
    # tfds maps the .mat files' label 10 to digit 0; 'extra' has 531,131 more training digits.
    "svhn": TfdsBuilder("svhn_cropped", "SVHN", ("train", "test", "extra"), 10, (32, 32, 3), order_by_id=True),
}


# Where tfds downloads each dataset from (its builders' URLs): checked before a download, so a
# machine without internet fails in seconds instead of minutes of urllib3/tfds retries.
DOWNLOAD_URLS: dict[str, str] = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "svhn": "http://ufldl.stanford.edu/housenumbers/",
}
NETWORK_TIMEOUT_S = 5.0


def tfds_prepared(name: str, tfds_data_dir: str | os.PathLike[str] | None) -> bool:
    """Whether tfds has ``name`` prepared already (then no download, and no network, is needed)."""
    from pathlib import Path

    try:
        root = Path(tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets").expanduser()
        return any((root / TFDS_BUILDERS[name].builder).glob("*/dataset_info.json"))
    except (OSError, RuntimeError, KeyError):
        return False


def _socket_connect(host: str, port: int, timeout: float) -> None:
    import socket

    socket.create_connection((host, port), timeout=timeout).close()


_connect = _socket_connect  # the tests replace it: they never touch the network


def unreachable(url: str, timeout: float | None = None) -> str | None:
    """None if a TCP connection to ``url``'s host (or the proxy for it) opens within ``timeout``
    seconds, else ``host:port`` and why. Name resolution counts towards the timeout."""
    import threading
    import urllib.parse
    import urllib.request

    timeout = NETWORK_TIMEOUT_S if timeout is None else timeout
    target = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(target.scheme)
    if proxy and not urllib.request.proxy_bypass(target.hostname or ""):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            _connect(host, port, timeout)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 (reported below)
            outcome.append(e)

    thread = threading.Thread(target=attempt, daemon=True, name="nin-repro-network-check")
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"{host}:{port} (no answer within {timeout:g} s)"
    if outcome[0] is not None:
        e = outcome[0]
        return f"{host}:{port} ({getattr(e, 'strerror', None) or type(e).__name__ + ': ' + _one_line(e, 80)})"
    return None


class TfdsUnavailable(DataError):
    """tensorflow-datasets, TensorFlow, or a package their preparation needs is not installed."""


class TfdsDataMissing(DataError):
    """The data is not prepared in the tfds data dir and could not be (or was not to be) downloaded."""


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where_to_put(name: str) -> str:
    from nin_repro.data.readers import expected_files

    try:
        return f"put {expected_files(name)} in --data-dir, or "
    except DataError:  # no original-file reader for this dataset (e.g. SVHN)
        return ""


def _download_errors(tfds: Any) -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the download or preparation failed' (network, checksum, archive)."""
    errors: list[type[BaseException]] = [OSError, tfds.download.DownloadError]  # requests' errors are OSErrors
    try:
        from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError
        from tensorflow_datasets.core.download.extractor import ExtractError

        errors += [NonMatchingChecksumError, ExtractError]
    except ImportError:  # moved in some tfds version: OSError and DownloadError still apply
        pass
    if "tensorflow" in sys.modules:  # tf.io.gfile errors; only look if tfds already loaded TF
        errors.append(sys.modules["tensorflow"].errors.OpError)
    return tuple(errors)


def _to_numpy(ds_batched: Any, tfds: Any, info: TfdsBuilder, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the (image, label) batches of one split (dict batches with ``id`` when
    ``info.order_by_id``, then sorted by id); validate; labels -> int32."""
    xs, ys, ids = [], [], []
    for batch in tfds.as_numpy(ds_batched):
        if info.order_by_id:
            xs.append(np.asarray(batch["image"]))
            ys.append(np.asarray(batch["label"]))
            ids.append(np.asarray(batch["id"]))
        else:
            x, y = batch
            xs.append(np.asarray(x))
            ys.append(np.asarray(y))
    x_NHWC = np.concatenate(xs) if xs else np.zeros((0, *info.image_shape), np.uint8)
    del xs
    y64 = np.concatenate(ys).astype(np.int64) if ys else np.zeros((0,), np.int64)
    if ids:
        order = np.argsort(np.concatenate(ids), kind="stable")
        if np.any(order != np.arange(len(order))):
            x_NHWC, y64 = x_NHWC[order], y64[order]
    # Range check before the int32 cast, so that no out-of-range value can wrap into range.
    if y64.size and (y64.min() < 0 or y64.max() >= info.num_classes):
        raise DataError(f"{what}: labels must lie in [0, {info.num_classes}), found [{y64.min()}, {y64.max()}]")
    y = y64.astype(np.int32)
    validate_split(x_NHWC, y, num_classes=info.num_classes, image_shape=info.image_shape, what=what)
    return x_NHWC, y


def load_tfds_splits(
    name: str,
    splits: tuple[str, ...] = ("train", "test"),
    *,
    tfds_data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load ``splits`` of dataset ``name`` via tfds: split name -> (x_NHWC uint8, y int32).

    Raises TfdsUnavailable if tfds/TensorFlow is missing, TfdsDataMissing if the data is not
    prepared (download=False) or the download fails.
    """
    if name not in TFDS_BUILDERS:
        raise DataError(f"no tensorflow-datasets builder known for {name!r}; known: {', '.join(TFDS_BUILDERS)}")
    info = TFDS_BUILDERS[name]
    unknown = [s for s in splits if s not in info.splits]
    if unknown:
        raise DataError(f"{info.title} has no split(s) {', '.join(unknown)}; it has {', '.join(info.splits)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    # tfds logs warnings through absl (e.g. about half-prepared folders); our own message says
    # what matters, in one line.
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise TfdsUnavailable(f"{info.title} via tensorflow-datasets: it is not installed; {INSTALL_HINT}") from None
    where = f"the tfds data dir {tfds_data_dir}" if tfds_data_dir else "the default tfds data dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    download_errors = _download_errors(tfds)
    try:
        loaded = tfds.load(
            info.builder,
            split=list(splits),
            batch_size=_CHUNK,
            as_supervised=not info.order_by_id,  # dicts when the id is needed
            download=download,
            data_dir=None if tfds_data_dir is None else os.fspath(tfds_data_dir),
        )
        return {s: _to_numpy(ds, tfds, info, what=f"tfds {info.builder} {s}") for s, ds in zip(splits, loaded)}
    except ImportError as e:  # TensorFlow, or a package tfds preparation needs (e.g. importlib_resources)
        missing = getattr(e, "name", None) or _one_line(e)
        raise TfdsUnavailable(f"{info.title} via tensorflow-datasets needs the missing module {missing}; {INSTALL_HINT}") from None
    except AssertionError as e:
        if "could not find data" not in str(e):
            raise
        raise TfdsDataMissing(f"{info.title} not found in {where}: {_where_to_put(name)}run with --download (needs internet and the 'download' extra)") from None
    except download_errors as e:
        raise TfdsDataMissing(
            f"{info.title}: downloading/preparing with tensorflow-datasets failed ({type(e).__name__}: {_one_line(e, 120)}); "
            f"check the internet connection, or {_where_to_put(name)}retry later"
        ) from None


def load_tfds(name: str, *, tfds_data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Arrays:
    """Train and test split of ``name`` via tfds: (x_train, y_train, x_test, y_test)."""
    splits = load_tfds_splits(name, ("train", "test"), tfds_data_dir=tfds_data_dir, download=download)
    return (*splits["train"], *splits["test"])
