"""Readers of the datasets' original distribution files (no TensorFlow, no tfds).

Each reader returns ``(x_train_NHWC, y_train, x_test_NHWC, y_test)`` as uint8 / int32 arrays and
turns every kind of damaged file into a one-line :class:`DataError` that names the file and says
what to do. Formats: CIFAR python pickles (https://www.cs.toronto.edu/~kriz/cifar.html), MNIST
idx files (https://yann.lecun.com/exdb/mnist/), optionally gzipped, and the SVHN cropped-digit
MATLAB files (http://ufldl.stanford.edu/housenumbers/, read with scipy, imported lazily).
SVHN has three splits (train, test, extra): :func:`read_svhn_mat` returns all three and
``nin_repro.data.svhn_split`` turns them into the paper's train/validation split.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from nin_repro.data import validate_split
from nin_repro.errors import DataError

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# Folder (inside --data-dir) that holds each dataset's original files, and what to tell a user
# whose files are missing. MNIST files may also sit directly in --data-dir or in torchvision's
# MNIST/raw layout.
ORIGINAL_FOLDERS: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
    "mnist": ("mnist", "MNIST/raw", "."),
    "svhn": ("svhn", "SVHN", "svhn_cropped", "."),
}
_EXPECTED: dict[str, str] = {
    "cifar10": "cifar-10-batches-py/ (data_batch_1..5, test_batch; unpacked from cifar-10-python.tar.gz, https://www.cs.toronto.edu/~kriz/cifar.html)",
    "cifar100": "cifar-100-python/ (train, test; unpacked from cifar-100-python.tar.gz, https://www.cs.toronto.edu/~kriz/cifar.html)",
    "mnist": "mnist/ with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each may be .gz; https://yann.lecun.com/exdb/mnist/)",
    "svhn": "svhn/ with train_32x32.mat, test_32x32.mat and extra_32x32.mat (the cropped digits, 'Format 2', http://ufldl.stanford.edu/housenumbers/)",
}

_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SVHN_SPLITS = ("train", "test", "extra")
_SVHN_FILES = {split: f"{split}_32x32.mat" for split in SVHN_SPLITS}
# A file that marks a dataset's folder when the dataset has no folder of its own in the original
# distribution (the folder may be --data-dir itself).
_MARKER_FILES = {"mnist": _MNIST_FILES["train_images"], "svhn": _SVHN_FILES["train"]}
_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

# The only globals a CIFAR pickle needs (numpy arrays, written by Python 2 or 3, numpy 1 or 2).
# Anything else is refused: unpickling runs code, and these files come from the internet.
_ALLOWED_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol-2 pickles of bytes written by Python 3
    }
)

# What pickle.load raises on damaged input. The C unpickler mostly raises UnpicklingError, but
# random bytes can also hit opcodes that fail with these (e.g. a bad memo index -> KeyError,
# a truncated stream -> EOFError, a wrong argument to a reconstructor -> TypeError/ValueError,
# a huge length field -> MemoryError/OverflowError).
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,  # includes UnicodeDecodeError
    TypeError,
    KeyError,
    IndexError,
    LookupError,  # _codecs.encode with a mangled encoding name (found by tests/test_fuzz_readers.py)
    AttributeError,
    ImportError,
    OverflowError,
    MemoryError,
    RecursionError,
)
# What reading a (possibly gzipped) file raises: OSError covers missing/unreadable files and
# gzip.BadGzipFile; a gzip stream cut short raises EOFError; corrupt deflate data raises zlib.error.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def expected_files(name: str) -> str:
    """Which original files ``name`` needs inside ``--data-dir`` (for error messages)."""
    try:
        return _EXPECTED[name]
    except KeyError:
        raise DataError(f"no original-file reader for dataset {name!r}; known: {', '.join(_EXPECTED)}") from None


def find_original_folder(name: str, data_dir: Path) -> Path | None:
    """The folder under ``data_dir`` holding ``name``'s original files, or None if there is none."""
    for sub in ORIGINAL_FOLDERS[name]:
        folder = data_dir / sub
        if name in _MARKER_FILES:
            # No folder of its own in the original distribution: look for a marker file.
            marker = folder / _MARKER_FILES[name]
            for candidate in (marker, marker.with_name(marker.name + ".gz")):
                if _usable(candidate, name, want_dir=False):
                    return folder
        elif _usable(folder, name, want_dir=True):
            return folder
    return None


def _usable(path: Path, name: str, *, want_dir: bool) -> bool:
    """Whether ``path`` is there as a folder (``want_dir``) or a file. Something of that name that
    cannot be used (a symbolic link loop or one that leads nowhere, a file for a folder) is a
    DataError: the user put it there, so falling through to a download would hide the problem."""
    import errno
    import os

    if not os.path.lexists(path):
        return False
    try:
        is_dir = os.path.isdir(path)
        os.stat(path)  # raises on a loop (ELOOP) or a link to nothing (ENOENT)
    except OSError as e:
        why = "a symbolic link loop" if e.errno == errno.ELOOP else f"a symbolic link that leads nowhere ({e.strerror})" if path.is_symlink() else e.strerror
        raise DataError(f"{path}: {why}; put {expected_files(name)} there") from None
    if want_dir and not is_dir:
        raise DataError(f"{path} is not a folder; put {expected_files(name)} there")
    if not want_dir and is_dir:
        raise DataError(f"{path} is a folder, not a file; put {expected_files(name)} there")
    return True


def read_original(name: str, folder: Path) -> Arrays:
    """Dispatch to the reader for ``name`` (the train/test datasets; SVHN: :func:`read_svhn_mat`)."""
    readers = {"cifar10": read_cifar10_python, "cifar100": read_cifar100_python, "mnist": read_mnist_idx}
    if name not in readers:
        raise DataError(f"no train/test reader for dataset {name!r}; known: {', '.join(readers)}")
    return readers[name](folder)


# ----------------------------------------------------------------------------------------- CIFAR


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _load_cifar_pickle(path: Path, label_key: bytes, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file -> (x_NHWC uint8, labels int64), raising DataError on any damage."""
    if not path.is_file():
        raise DataError(f"{path}: file missing; {hint}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check permissions or {hint}") from None
    try:
        batch = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _PICKLE_ERRORS as e:
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}); {hint}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(batch).__name__}; {hint}")
    missing = [k.decode() for k in (b"data", label_key) if k not in batch]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}; {hint}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {getattr(data, 'dtype', '')} {shape}; {hint}")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: '{label_key.decode()}' is not a list of integers; {hint}") from None
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but labels of shape {labels.shape}; {hint}")
    # A row is 1024 R, 1024 G, 1024 B values, each a row-major 32x32 plane.
    x_NHWC = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x_NHWC), labels


def _finish(x: np.ndarray, y64: np.ndarray, *, num_classes: int, image_shape: tuple[int, int, int], what: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """Check the label range (before casting, so huge values cannot wrap) and validate."""
    if y64.size and (y64.min() < 0 or y64.max() >= num_classes):
        raise DataError(f"{what}: labels must lie in [0, {num_classes}), found [{y64.min()}, {y64.max()}]; {hint}")
    y = y64.astype(np.int32)
    try:
        validate_split(x, y, num_classes=num_classes, image_shape=image_shape, what=what)
    except DataError as e:
        raise DataError(f"{e}; {hint}") from None
    return x, y


def read_cifar10_python(folder: str | Path) -> Arrays:
    """Read ``cifar-10-batches-py/`` (data_batch_1..5 + test_batch)."""
    folder = Path(folder)
    hint = f"re-download cifar-10-python.tar.gz and unpack it so that {folder} holds data_batch_1..5 and test_batch"
    parts = [_load_cifar_pickle(folder / f, b"labels", hint) for f in _CIFAR10_TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    x_test, y_test = _load_cifar_pickle(folder / "test_batch", b"labels", hint)
    x_train, y_train = _finish(x_train, y_train, num_classes=10, image_shape=(32, 32, 3), what=f"{folder}/data_batch_*", hint=hint)
    x_test, y_test = _finish(x_test, y_test, num_classes=10, image_shape=(32, 32, 3), what=f"{folder / 'test_batch'}", hint=hint)
    return x_train, y_train, x_test, y_test


def read_cifar100_python(folder: str | Path) -> Arrays:
    """Read ``cifar-100-python/`` (train + test), using the 100 fine labels."""
    folder = Path(folder)
    hint = f"re-download cifar-100-python.tar.gz and unpack it so that {folder} holds train and test"
    x_train, y_train = _load_cifar_pickle(folder / "train", b"fine_labels", hint)
    x_test, y_test = _load_cifar_pickle(folder / "test", b"fine_labels", hint)
    x_train, y_train = _finish(x_train, y_train, num_classes=100, image_shape=(32, 32, 3), what=str(folder / "train"), hint=hint)
    x_test, y_test = _finish(x_test, y_test, num_classes=100, image_shape=(32, 32, 3), what=str(folder / "test"), hint=hint)
    return x_train, y_train, x_test, y_test


# ----------------------------------------------------------------------------------------- MNIST


def _read_maybe_gz(folder: Path, base: str, hint: str) -> tuple[bytes, Path]:
    """Bytes of ``base`` or, if only that exists, ``base.gz`` (decompressed)."""
    plain, gz = folder / base, folder / (base + ".gz")
    path = plain if plain.is_file() else gz
    if not path.is_file():
        raise DataError(f"{plain}(.gz): file missing; {hint}")
    try:
        if path is gz:
            with gzip.open(path, "rb") as f:
                return f.read(), path
        return path.read_bytes(), path
    except _READ_ERRORS as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e}); {hint}") from None


def _parse_idx(raw: bytes, path: Path, *, magic: int, ndim: int, hint: str) -> np.ndarray:
    """Parse an idx file: big-endian int32 magic, ``ndim`` int32 sizes, then uint8 data."""
    header_len = 4 * (1 + ndim)
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated ({len(raw)} bytes, header alone needs {header_len}); {hint}")
    header = np.frombuffer(raw, dtype=">i4", count=1 + ndim).astype(np.int64)
    if header[0] != magic:
        raise DataError(f"{path}: wrong magic number {header[0]} (expected {magic}); is this the right file? {hint}")
    dims = tuple(int(d) for d in header[1:])
    expected_len = header_len + math.prod(dims)  # Python ints: no overflow on a garbage header
    if min(dims) < 0 or len(raw) != expected_len:
        raise DataError(f"{path}: header says {dims} = {expected_len} bytes, file has {len(raw)}; {hint}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _read_mnist_split(folder: Path, images: str, labels: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    raw_x, path_x = _read_maybe_gz(folder, images, hint)
    raw_y, path_y = _read_maybe_gz(folder, labels, hint)
    x = _parse_idx(raw_x, path_x, magic=_IDX_IMAGES_MAGIC, ndim=3, hint=hint)
    y = _parse_idx(raw_y, path_y, magic=_IDX_LABELS_MAGIC, ndim=1, hint=hint)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{path_x} has {x.shape[0]} images but {path_y} has {y.shape[0]} labels; {hint}")
    return _finish(x[..., None].copy(), y.astype(np.int64), num_classes=10, image_shape=(28, 28, 1), what=str(path_x), hint=hint)


def read_mnist_idx(folder: str | Path) -> Arrays:
    """Read the four MNIST idx files (each optionally ``.gz``) from ``folder``; images (N, 28, 28, 1)."""
    folder = Path(folder)
    hint = f"re-download the four MNIST idx files into {folder}"
    x_train, y_train = _read_mnist_split(folder, _MNIST_FILES["train_images"], _MNIST_FILES["train_labels"], hint)
    x_test, y_test = _read_mnist_split(folder, _MNIST_FILES["test_images"], _MNIST_FILES["test_labels"], hint)
    return x_train, y_train, x_test, y_test


# ------------------------------------------------------------------------------------------ SVHN


def _mat_errors() -> tuple[type[BaseException], ...]:
    """What scipy.io.loadmat raises on a damaged file (found by truncating and corrupting files):
    MatReadError (empty/short header), ValueError (unknown version, malformed element, bad
    reshape), TypeError (unexpected element type), IndexError, OSError ("could not read bytes"
    on a truncated element), zlib.error / EOFError (damaged compressed element), MemoryError /
    OverflowError (a garbage size field), NotImplementedError (a v7.3 HDF5 file)."""
    from scipy.io.matlab import MatReadError

    return (MatReadError, ValueError, TypeError, IndexError, OSError, EOFError, zlib.error, MemoryError, OverflowError, NotImplementedError)


def read_svhn_file(path: str | Path, hint: str = "") -> tuple[np.ndarray, np.ndarray]:
    """One SVHN ``*_32x32.mat`` file -> (x uint8 (N, 32, 32, 3) C-contiguous, y int32 (N,) in 0..9).

    The file holds ``X`` uint8 (32, 32, 3, N) and ``y`` (N, 1) in 1..10, where 10 is the digit 0
    (so the label is ``y % 10``, as tensorflow-datasets does). Every kind of damage raises a
    one-line DataError naming the file.
    """
    path = Path(path)
    hint = hint or f"re-download {path.name} from http://ufldl.stanford.edu/housenumbers/"
    if not path.is_file():
        raise DataError(f"{path}: file missing; {hint}")
    try:
        import scipy.io
    except ImportError:
        raise DataError(f"{path}: reading SVHN .mat files needs scipy: pip install scipy") from None
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except NotImplementedError:  # MATLAB v7.3 (HDF5): the original files are v5
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file, not the original v5 file; {hint}") from None
    except _mat_errors() as e:
        raise DataError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {' '.join(str(e).split())[:120]}); {hint}") from None
    missing = [k for k in ("X", "y") if k not in mat]
    if missing:
        raise DataError(f"{path}: missing variable(s) {', '.join(missing)} (expected X and y); {hint}")
    x, y = mat.pop("X"), mat.pop("y")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: 'X' must be uint8 of shape (32, 32, 3, N), got {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}; {hint}")
    n = x.shape[3]
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iuf" or y.size != n or y.ndim not in (1, 2) or (y.ndim == 2 and 1 not in y.shape):
        raise DataError(f"{path}: 'y' must be {n} labels of shape ({n}, 1), got {getattr(y, 'dtype', type(y).__name__)} {getattr(y, 'shape', '')}; {hint}")
    y = y.reshape(-1)
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise DataError(f"{path}: 'y' holds non-integer labels; {hint}")
    if n and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: labels must lie in 1..10 (10 = digit 0), found [{y.min():g}, {y.max():g}]; {hint}")
    labels = (y.astype(np.int64) % 10).astype(np.int32)
    # X is (H, W, C, N), usually Fortran-ordered as MATLAB wrote it: one copy into C-order NHWC.
    x_NHWC = np.ascontiguousarray(np.moveaxis(x, -1, 0))
    del x, mat
    return x_NHWC, labels


def read_svhn_mat(folder: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read ``train_32x32.mat``, ``test_32x32.mat`` and ``extra_32x32.mat`` from ``folder``.

    Returns split name -> (x uint8 (N, 32, 32, 3), y int32 (N,) in 0..9), in file order. All three
    files are needed: the paper trains on train + extra (minus a validation split). Memory: the
    extra file is 1.6 GB of pixels; reading it peaks at about twice that (the file's array and its
    NHWC copy), one file at a time.
    """
    folder = Path(folder)
    hint = f"download the three cropped-digit files (train_32x32.mat, test_32x32.mat, extra_32x32.mat) from http://ufldl.stanford.edu/housenumbers/ into {folder}"
    missing = [f for f in _SVHN_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}; {hint}")
    return {split: read_svhn_file(folder / _SVHN_FILES[split], hint) for split in SVHN_SPLITS}
