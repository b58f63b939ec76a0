"""Datasets as uint8 NHWC images + int32 labels, split train/test.

Sources are tried in a fixed order and the one used is named in the run record:
(1) the project's ``.npz`` cache, (2) original files in ``--data-dir``,
(3) tensorflow-datasets (download + prepare, imported lazily), converted once into the cache.

SVHN comes with the paper's split already applied (:func:`svhn_split`): ``x_train`` is train +
extra less a held-out validation set of 6,000 images, kept in ``x_val``/``y_val`` (never trained on).
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
    # A held-out validation split that x_train excludes (SVHN only; None elsewhere).
    x_val: np.ndarray | None = None  # uint8 (V, H, W, C)
    y_val: np.ndarray | None = None  # int32 (V,)

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
    if (ds.x_val is None) != (ds.y_val is None):
        raise DataError(f"{ds.name} validation: images and labels must both be given or both be None")
    if ds.x_val is not None:
        validate_split(ds.x_val, ds.y_val, num_classes=ds.num_classes, image_shape=ds.image_shape, what=f"{ds.name} validation")
    return ds


# ------------------------------------------------------------------------------------ SVHN split

# pylearn2 datasets/svhn.py (the split maxout and NIN used, docs/paper-notes.md, "Preprocessing"): 400 images of each class
# from train and 200 from extra are the validation set; everything else is trained on.
SVHN_VALID_PER_CLASS_TRAIN = 400
SVHN_VALID_PER_CLASS_EXTRA = 200
# pylearn2 draws both with one numpy.random.RandomState(322) ("for consistency between
# experiments"), visiting the file labels 1..10, i.e. digits 1, 2, ..., 9, 0, shuffling each
# class's indices and keeping the first 400 (train) then 200 (extra). We make the same calls, so
# on the original files the validation images are pylearn2's own.
SVHN_SPLIT_SEED = 322
_SVHN_CLASS_ORDER = (1, 2, 3, 4, 5, 6, 7, 8, 9, 0)
_TAKE_CHUNK = 50_000  # images copied per step when gathering the training set (bounds temporaries)


def _valid_indices(y: np.ndarray, per_class: int, rng: np.random.RandomState, what: str) -> np.ndarray:
    counts = np.bincount(y, minlength=10)
    if counts.min() < per_class:
        raise DataError(
            f"the SVHN split needs at least {SVHN_VALID_PER_CLASS_TRAIN} images of every class in train and "
            f"{SVHN_VALID_PER_CLASS_EXTRA} in extra; {what} has {', '.join(str(c) for c in counts)} images of the digits 0..9"
        )
    chosen = []
    for digit in _SVHN_CLASS_ORDER:
        index = np.nonzero(y == digit)[0]
        rng.shuffle(index)
        chosen.append(index[:per_class])
    return np.sort(np.concatenate(chosen))


def _gather(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Concatenate ``x[idx]`` for (x, idx) in parts into one new array, a chunk at a time."""
    n = sum(len(idx) for _, idx in parts)
    out = np.empty((n, *parts[0][0].shape[1:]), dtype=parts[0][0].dtype)
    pos = 0
    for x, idx in parts:
        for start in range(0, len(idx), _TAKE_CHUNK):
            sel = idx[start : start + _TAKE_CHUNK]
            out[pos : pos + len(sel)] = x[sel]
            pos += len(sel)
    return out


def svhn_split(
    x_train: np.ndarray, y_train: np.ndarray, x_extra: np.ndarray, y_extra: np.ndarray, seed: int = SVHN_SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The paper's SVHN split of train + extra -> (x_tr, y_tr, x_val, y_val); pure and deterministic.

    Validation: 400 random images per class from ``train`` and 200 per class from ``extra``
    (6,000); training: all the other images of train and extra (598,388 on the real files), train
    first, each in its original order. Labels are digits 0..9. Raises DataError if a class has too
    few images. Memory: the outputs are new uint8 arrays (no float copies, no full temporaries).
    """
    y_train, y_extra = np.asarray(y_train), np.asarray(y_extra)
    if len(x_train) != len(y_train) or len(x_extra) != len(y_extra):
        raise DataError(f"SVHN split: {len(x_train)} train images but {len(y_train)} labels, {len(x_extra)} extra images but {len(y_extra)} labels")
    if (y_train.size and (y_train.min() < 0 or y_train.max() > 9)) or (y_extra.size and (y_extra.min() < 0 or y_extra.max() > 9)):
        raise DataError("SVHN split: labels must be digits 0..9")
    rng = np.random.RandomState(seed)  # legacy generator on purpose: pylearn2's stream (see above)
    val_t = _valid_indices(y_train, SVHN_VALID_PER_CLASS_TRAIN, rng, "train")
    val_e = _valid_indices(y_extra, SVHN_VALID_PER_CLASS_EXTRA, rng, "extra")
    keep_t = np.setdiff1d(np.arange(len(y_train)), val_t, assume_unique=True)
    keep_e = np.setdiff1d(np.arange(len(y_extra)), val_e, assume_unique=True)
    x_tr = _gather([(x_train, keep_t), (x_extra, keep_e)])
    y_tr = np.concatenate([y_train[keep_t], y_extra[keep_e]]).astype(np.int32)
    x_val = _gather([(x_train, val_t), (x_extra, val_e)])
    y_val = np.concatenate([y_train[val_t], y_extra[val_e]]).astype(np.int32)
    return x_tr, y_tr, x_val, y_val


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
    # Cropped digits; train = train + extra less the validation split (see svhn_split).
    "svhn": DatasetInfo("SVHN", 10, (32, 32, 3), DIGIT_CLASSES),
}
# SVHN's validation images are cached next to the dataset as a second cache entry of this name
# (its "train" split holds them, its test split is empty): the cache format has train/test only.
SVHN_VALID_CACHE_NAME = "svhn-valid"


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
    require_cache: bool = False,
) -> Dataset:
    """Load ``name`` from (1) the cache, (2) original files in ``data_dir``, (3) tensorflow-datasets.

    ``require_cache`` (``nin-repro data download``): a cache that cannot be written is an error
    (NinError, exit 1) instead of a warning.

    A dataset read in (2) or (3) is written to the cache (default: :func:`cache.default_cache_dir`).
    ``source`` of the result says which one was used. Raises DataError, one line, if it is nowhere.
    SVHN is returned split as in the paper (:func:`svhn_split`), validation images in ``x_val``.
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
        _require_images(cached)
        return _with_cached_validation(cached, cache_path) if name == "svhn" else cached

    ds = None
    folder = readers.find_original_folder(name, data_path) if data_path is not None else None
    if folder is not None:
        # Files that are present but damaged raise DataError here instead of falling through to a
        # download: the user pointed us at them, so a silent substitute would hide the problem.
        if name == "svhn":
            ds = _svhn_dataset(readers.read_svhn_mat(folder), info, source=f"files:{folder}")
        else:
            arrays = readers.read_original(name, folder)
            ds = Dataset(name, *arrays, num_classes=info.num_classes, class_names=info.class_names, source=f"files:{folder}")
    else:
        ds = _from_tfds(name, data_path, cache_path, download, tfds_data_dir)

    validate_dataset(ds)
    _require_images(ds)
    _write_cache(ds, cache_path, require_cache)
    return ds


def _from_tfds(name: str, data_path: Path | None, cache_path: Path, download: bool, tfds_data_dir) -> Dataset:
    """``name`` through tensorflow-datasets (downloaded if allowed), or a one-line DataError that
    says which files to put where."""
    from nin_repro.data import readers, tfds_source  # imports tensorflow_datasets only when called

    info = DATASETS[name]
    looked_in = f"--data-dir {data_path}" if data_path is not None else "no --data-dir given"
    put = f"put {readers.expected_files(name)} in {'--data-dir ' + str(data_path) if data_path else 'a folder passed as --data-dir'}"
    if download:
        _check_downloadable(name, data_path, cache_path, tfds_data_dir)
    try:
        if name == "svhn":
            splits = tfds_source.load_tfds_splits(name, readers.SVHN_SPLITS, tfds_data_dir=tfds_data_dir, download=download)
        else:
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
    source = f"tfds:{tfds_source.TFDS_BUILDERS[name].builder}"
    if name == "svhn":
        return _svhn_dataset(splits, info, source=source)
    return Dataset(name, *arrays, num_classes=info.num_classes, class_names=info.class_names, source=source)


def _write_cache(ds: Dataset, cache_path: Path, require_cache: bool) -> None:
    """Cache a dataset read from files or tfds. A cache that cannot be written is a warning, or,
    with ``require_cache`` (``nin-repro data download``), a one-line error (exit 1)."""
    from nin_repro.data import cache

    try:
        if ds.x_val is not None:
            # Written first: a cached dataset without its validation entry is the rarer failure.
            cache.save_cache(cache_path, _validation_as_dataset(ds))
        cache.save_cache(cache_path, ds)
    except OSError as e:
        if require_cache:
            from nin_repro.errors import NinError

            raise NinError(
                f"could not write the dataset cache in {cache_path} ({e.strerror or e}); nothing was cached: pass a writable --cache-dir (or set NIN_REPRO_CACHE) and run it again"
            ) from None
        _warn_cache_not_written(cache_path, e)


def _require_images(ds: Dataset) -> None:
    """A table trains on the training split and reports the test error: neither may be empty
    (an empty test split used to fail with ZeroDivisionError after the whole training)."""
    source = ds.source.partition(":")[2] or ds.source
    for split, x in (("train", ds.x_train), ("test", ds.x_test)):
        if len(x) == 0:
            raise DataError(f"{ds.name} from {source} has 0 {split} images: the original files are incomplete; re-download them (or delete the cache file to rebuild it)")


def _check_downloadable(name: str, data_path: Path | None, cache_path: Path, tfds_data_dir) -> None:
    """Raise DataError, one line, if ``name`` would have to be downloaded and the download host
    cannot be reached: without internet tfds retries for minutes; this says so in seconds."""
    from nin_repro.data import cache, readers, tfds_source

    if tfds_source.tfds_prepared(name, tfds_data_dir):
        return
    why = tfds_source.unreachable(tfds_source.DOWNLOAD_URLS[name])
    if why is None:
        return
    npz, sidecar = cache.cache_paths(cache_path, name)
    where = f"--data-dir {data_path}" if data_path is not None else "a folder passed as --data-dir"
    raise DataError(
        f"{DATASETS[name].title} is not cached ({npz}){f' nor in --data-dir {data_path}' if data_path else ''}, and it cannot be downloaded: no connection to {why}. "
        f"Without internet: put {readers.expected_files(name)} in {where}; or run `nin-repro data download {name}` on a machine with internet "
        f"and copy {npz.name} and {sidecar.name} into {cache_path} (or the folder given as --cache-dir)"
    )


def preflight(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    tfds_data_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Fail fast, before any long step, when :func:`load_dataset` could only fail: ``name`` is not
    cached, not in ``data_dir``, and the download host is unreachable. Reads no data."""
    from nin_repro.data import cache, readers

    if name not in DATASETS:
        return  # load_dataset reports it
    data_path = Path(data_dir).expanduser() if data_dir is not None else None
    cache_path = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()
    if cache.cache_paths(cache_path, name)[0].is_file():
        return
    if data_path is not None and (not data_path.is_dir() or readers.find_original_folder(name, data_path) is not None):
        return  # load_dataset reads the files, or says what is wrong with --data-dir
    if download:
        _check_downloadable(name, data_path, cache_path, tfds_data_dir)


def _svhn_dataset(splits: dict[str, tuple[np.ndarray, np.ndarray]], info: DatasetInfo, source: str) -> Dataset:
    """Train/test/extra arrays (file order) -> the paper's split; frees the inputs as it goes."""
    x_tr, y_tr, x_val, y_val = svhn_split(*splits.pop("train"), *splits.pop("extra"))
    x_test, y_test = splits.pop("test")
    return Dataset("svhn", x_tr, y_tr, x_test, y_test, num_classes=info.num_classes, class_names=info.class_names, source=source, x_val=x_val, y_val=y_val)


def _validation_as_dataset(ds: Dataset) -> Dataset:
    """The validation split packed as a cache entry: its images as "train", an empty "test"."""
    assert ds.x_val is not None and ds.y_val is not None
    return Dataset(SVHN_VALID_CACHE_NAME, ds.x_val, ds.y_val, ds.x_val[:0], ds.y_val[:0], num_classes=ds.num_classes, class_names=ds.class_names, source=ds.source)


def _with_cached_validation(ds: Dataset, cache_path: Path) -> Dataset:
    """Attach the cached validation split to a cached SVHN; without it, warn and return x_val=None
    (the training images still exclude the validation images, so training is unaffected)."""
    import warnings

    from nin_repro.data import cache

    val = cache.load_cache(cache_path, SVHN_VALID_CACHE_NAME)
    if val is None or val.image_shape != ds.image_shape:
        npz, _ = cache.cache_paths(cache_path, SVHN_VALID_CACHE_NAME)
        warnings.warn(
            f"SVHN validation images are not in the cache ({npz}): x_val is None; delete {cache.cache_paths(cache_path, ds.name)[0]} to rebuild both from the original files",
            stacklevel=3,
        )
        return ds
    return dataclasses.replace(ds, x_val=val.x_train, y_val=val.y_train)
