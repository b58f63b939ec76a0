"""Datasets as uint8 NHWC images + int32 labels, split train/test.

Sources are tried in a fixed order and the one used is named in the run record:
(1) the project's ``.npz`` cache, (2) original files in ``--data-dir``,
(3) tensorflow-datasets (download + prepare, imported lazily), converted once into the cache.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from nin_repro.errors import DataError, UsageError


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


# ------------------------------------------------------------------------------ dataset catalogue


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    title: str  # for messages, e.g. "CIFAR-10"
    num_classes: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The fine label names of cifar-100-python/meta (b'fine_label_names'), in label order.
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(d) for d in range(10))

# The datasets load_dataset() knows (original files, cache, tfds).
DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("CIFAR-10", 10, (32, 32, 3), CIFAR10_CLASSES),
    "cifar100": DatasetInfo("CIFAR-100", 100, (32, 32, 3), CIFAR100_CLASSES),
    "mnist": DatasetInfo("MNIST", 10, (28, 28, 1), DIGIT_CLASSES),
}


def _warn_cache_not_written(cache_dir: object, err: OSError) -> None:
    import warnings

    # The cache only saves time: a read-only or full disk must not stop the run.
    warnings.warn(f"could not write the dataset cache in {cache_dir} ({err.strerror or err}); continuing without it", stacklevel=3)


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    tfds_data_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load ``name`` from (1) the cache, (2) original files in ``data_dir``, (3) tensorflow-datasets.

    A dataset read in (2) or (3) is written to the cache (default: :func:`cache.default_cache_dir`).
    ``source`` of the result says which one was used. Raises DataError, one line, if it is nowhere.
    """
    from nin_repro.data import cache, readers  # light (numpy only), but keep `import nin_repro.data` minimal

    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    info = DATASETS[name]
    data_path = None
    if data_dir is not None:
        # Checked first, even on a cache hit: a mistyped --data-dir should not pass silently.
        data_path = Path(data_dir).expanduser()
        if not data_path.exists():
            raise DataError(f"--data-dir {data_path} does not exist")
        if not data_path.is_dir():
            raise DataError(f"--data-dir {data_path} is not a folder")
    cache_path = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()

    cached = cache.load_cache(cache_path, name)
    if cached is not None:
        return cached

    ds = None
    folder = readers.find_original_folder(name, data_path) if data_path is not None else None
    if folder is not None:
        # Files that are present but damaged raise DataError here instead of falling through to a
        # download: the user pointed us at them, so a silent substitute would hide the problem.
        arrays = readers.read_original(name, folder)
        ds = Dataset(name, *arrays, num_classes=info.num_classes, class_names=info.class_names, source=f"files:{folder}")
    else:
        from nin_repro.data import tfds_source  # imports tensorflow_datasets only when called

        looked_in = f"--data-dir {data_path}" if data_path is not None else "no --data-dir given"
        put = f"put {readers.expected_files(name)} in {'--data-dir ' + str(data_path) if data_path else 'a folder passed as --data-dir'}"
        try:
            arrays = tfds_source.load_tfds(name, tfds_data_dir=tfds_data_dir, download=download)
        except tfds_source.TfdsUnavailable:
            raise DataError(
                f"{info.title} not found ({looked_in}; cache {cache_path}; tensorflow-datasets not installed): "
                f"{put}, or pip install 'nin-repro[download]' and run with --download (needs internet)"
            ) from None
        except tfds_source.TfdsDataMissing as e:
            if download:
                raise  # the download itself failed: its message says why and what to do
            raise DataError(
                f"{info.title} not found ({looked_in}; cache {cache_path}; not prepared by tensorflow-datasets): "
                f"{put}, or run with --download (needs internet and the 'download' extra)"
            ) from e
        ds = Dataset(name, *arrays, num_classes=info.num_classes, class_names=info.class_names, source=f"tfds:{tfds_source.TFDS_BUILDERS[name].builder}")

    validate_dataset(ds)
    try:
        cache.save_cache(cache_path, ds)
    except OSError as e:
        _warn_cache_not_written(cache_path, e)
    return ds
