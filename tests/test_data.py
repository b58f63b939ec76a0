"""Data loading: original-format readers (and every kind of damaged file), the cache, the order
of sources, synthetic data and the packaged demo digits. No TensorFlow: tfds is mocked here."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from nin_repro.data import DATASETS, Dataset, load_dataset, tfds_source
from nin_repro.data.cache import BadCacheWarning, default_cache_dir, load_cache, save_cache
from nin_repro.data.digits import load_demo_digits
from nin_repro.data.readers import read_cifar10_python, read_cifar100_python, read_mnist_idx
from nin_repro.data.synthetic import make_synthetic
from nin_repro.errors import DataError, UsageError

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ writers of the original formats


def _images_NHWC(rng: np.random.Generator, n: int, shape: tuple[int, int, int]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _cifar_rows(x_NHWC: np.ndarray) -> np.ndarray:
    """The file layout: per image 1024 R, 1024 G, 1024 B, each plane row-major."""
    return x_NHWC.transpose(0, 3, 1, 2).reshape(len(x_NHWC), 3072)


def _dump(path: Path, obj: object) -> None:
    # Protocol 2 with bytes keys, like the originals written by Python 2's cPickle.
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(folder: Path, n: int = 3, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Five training batches of n and a test batch of n images; returns the expected arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = _images_NHWC(rng, n, (32, 32, 3)), rng.integers(0, 10, n)
        _dump(folder / name, {b"batch_label": b"x", b"data": _cifar_rows(x), b"labels": [int(v) for v in y], b"filenames": []})
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def write_cifar100(folder: Path, n: int = 4, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("train", "test"):
        x, fine = _images_NHWC(rng, n, (32, 32, 3)), rng.integers(0, 100, n)
        coarse = fine // 5  # must not be used
        _dump(folder / name, {b"data": _cifar_rows(x), b"fine_labels": list(map(int, fine)), b"coarse_labels": list(map(int, coarse))})
        out += [x, fine]
    return tuple(out)


def _idx_images(x_NHW: np.ndarray) -> bytes:
    return np.array([2051, *x_NHW.shape], ">i4").tobytes() + x_NHW.tobytes()


def _idx_labels(y: np.ndarray) -> bytes:
    return np.array([2049, len(y)], ">i4").tobytes() + y.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 5, n_test: int = 3, gz: bool = False, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = _images_NHWC(rng, n, (28, 28, 1)), rng.integers(0, 10, n)
        for base, data in ((f"{prefix}-images-idx3-ubyte", _idx_images(x[..., 0])), (f"{prefix}-labels-idx1-ubyte", _idx_labels(y))):
            if gz:
                (folder / (base + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / base).write_bytes(data)
        out += [x, y]
    return tuple(out)


def _assert_same(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_test, y_test = got
    assert x_train.dtype == x_test.dtype == np.uint8 and y_train.dtype == y_test.dtype == np.int32
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def _assert_one_line_naming(err: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg


# --------------------------------------------------------------------------------------- readers


def test_cifar10_reader_matches_written_arrays(tmp_path):
    want = write_cifar10(tmp_path / "cifar-10-batches-py")
    got = read_cifar10_python(tmp_path / "cifar-10-batches-py")
    _assert_same(got, want)
    assert got[0].shape == (15, 32, 32, 3) and got[2].shape == (3, 32, 32, 3)


def test_cifar_row_layout_is_planar_rgb(tmp_path):
    """Independent of the writer above: byte 0 is R of pixel (0,0), byte 1 R of (0,1), byte 1024 G of (0,0)."""
    folder = tmp_path / "c"
    folder.mkdir()
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0], row[0, 1], row[0, 32], row[0, 1024], row[0, 2048 + 1023] = 11, 12, 13, 21, 39
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _dump(folder / name, {b"data": row, b"labels": [3]})
    x = read_cifar10_python(folder)[0][0]
    assert (x[0, 0, 0], x[0, 1, 0], x[1, 0, 0], x[0, 0, 1], x[31, 31, 2]) == (11, 12, 13, 21, 39)


def test_cifar10_reader_accepts_numpy2_protocol5_pickles(tmp_path):
    folder = tmp_path / "c"
    write_cifar10(folder, n=2)
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=5))
    assert read_cifar10_python(folder)[2].shape == (2, 32, 32, 3)


def test_cifar100_reader_uses_fine_labels(tmp_path):
    x_tr, fine_tr, x_te, fine_te = write_cifar100(tmp_path / "cifar-100-python")
    _assert_same(read_cifar100_python(tmp_path / "cifar-100-python"), (x_tr, fine_tr, x_te, fine_te))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reader_plain_and_gz(tmp_path, gz):
    want = write_mnist(tmp_path, gz=gz)
    got = read_mnist_idx(tmp_path)
    _assert_same(got, want)
    assert got[0].shape == (5, 28, 28, 1)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _repickle(p: Path, change) -> None:
    batch = pickle.loads(p.read_bytes(), encoding="bytes")
    _dump(p, change(batch))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


CIFAR_CORRUPTIONS = {
    "missing file": lambda p: p.unlink(),
    "empty file": lambda p: p.write_bytes(b""),
    "truncated": _truncate,
    "random bytes": lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()),
    "text file": lambda p: p.write_text("<html>404 Not Found</html>"),
    "gzip instead of pickle": lambda p: p.write_bytes(gzip.compress(p.read_bytes())),
    "pickle of a list": lambda p: _dump(p, [1, 2, 3]),
    "missing labels key": lambda p: _repickle(p, lambda b: {b"data": b[b"data"]}),
    "str keys": lambda p: _repickle(p, lambda b: {k.decode(): v for k, v in b.items()}),
    "data not an array": lambda p: _repickle(p, lambda b: {**b, b"data": b[b"data"].tolist()}),
    "wrong row length": lambda p: _repickle(p, lambda b: {**b, b"data": b[b"data"][:, :3000]}),
    "wrong dtype": lambda p: _repickle(p, lambda b: {**b, b"data": b[b"data"].astype(np.float32)}),
    "labels out of range": lambda p: _repickle(p, lambda b: {**b, b"labels": [10] * len(b[b"labels"])}),
    "negative label": lambda p: _repickle(p, lambda b: {**b, b"labels": [-1] * len(b[b"labels"])}),
    "huge label": lambda p: _repickle(p, lambda b: {**b, b"labels": [2**40] * len(b[b"labels"])}),
    "labels not ints": lambda p: _repickle(p, lambda b: {**b, b"labels": ["cat"] * len(b[b"labels"])}),
    "label count mismatch": lambda p: _repickle(p, lambda b: {**b, b"labels": b[b"labels"][:-1]}),
    "code-running pickle": lambda p: _dump(p, {b"data": _Evil(), b"labels": []}),
}


@pytest.mark.parametrize("file", ["data_batch_3", "test_batch"])
@pytest.mark.parametrize("case", sorted(CIFAR_CORRUPTIONS))
def test_cifar10_corruption_is_a_one_line_data_error(tmp_path, case, file):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, n=2)
    CIFAR_CORRUPTIONS[case](folder / file)
    with pytest.raises(DataError) as err:
        read_cifar10_python(folder)
    # The label-range check names the split (all training batches), not one batch file.
    named = folder if case in {"labels out of range", "negative label", "huge label"} else folder / file
    _assert_one_line_naming(err, named, "re-download")


def test_cifar100_missing_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder)
    _repickle(folder / "test", lambda b: {b"data": b[b"data"], b"coarse_labels": b[b"coarse_labels"]})
    with pytest.raises(DataError) as err:
        read_cifar100_python(folder)
    _assert_one_line_naming(err, folder / "test", "fine_labels", "re-download")


def _rewrite(p: Path, change) -> None:
    p.write_bytes(change(p.read_bytes()))


MNIST_CORRUPTIONS = {
    # case: (file to damage, how)
    "missing images": ("train-images-idx3-ubyte", lambda p: p.unlink()),
    "truncated images": ("train-images-idx3-ubyte", lambda p: _rewrite(p, lambda b: b[:-100])),
    "extra bytes": ("t10k-images-idx3-ubyte", lambda p: _rewrite(p, lambda b: b + b"\0" * 7)),
    "shorter than header": ("t10k-labels-idx1-ubyte", lambda p: _rewrite(p, lambda b: b[:5])),
    "empty labels": ("train-labels-idx1-ubyte", lambda p: p.write_bytes(b"")),
    "labels where images belong": ("train-images-idx3-ubyte", lambda p: p.write_bytes(_idx_labels(np.arange(5)))),
    "wrong magic": ("t10k-labels-idx1-ubyte", lambda p: _rewrite(p, lambda b: np.array([2051], ">i4").tobytes() + b[4:])),
    "negative count": ("t10k-labels-idx1-ubyte", lambda p: p.write_bytes(np.array([2049, -3], ">i4").tobytes())),
    "labels out of range": ("train-labels-idx1-ubyte", lambda p: p.write_bytes(_idx_labels(np.full(5, 10)))),
    "count mismatch": ("train-labels-idx1-ubyte", lambda p: p.write_bytes(_idx_labels(np.arange(4)))),
    "wrong image size": ("t10k-images-idx3-ubyte", lambda p: p.write_bytes(_idx_images(np.zeros((3, 20, 20), np.uint8)))),
}


@pytest.mark.parametrize("case", sorted(MNIST_CORRUPTIONS))
def test_mnist_corruption_is_a_one_line_data_error(tmp_path, case):
    write_mnist(tmp_path)
    file, damage = MNIST_CORRUPTIONS[case]
    damage(tmp_path / file)
    with pytest.raises(DataError) as err:
        read_mnist_idx(tmp_path)
    _assert_one_line_naming(err, tmp_path / file.replace("labels-idx1", "images-idx3") if case in {"count mismatch", "labels out of range"} else tmp_path / file, "re-download")


@pytest.mark.parametrize(
    "case,damage",
    [
        ("not gzip", lambda b: b"this is not gzip data at all"),
        ("truncated gzip", lambda b: b[: len(b) // 2]),
        ("corrupt deflate", lambda b: b[:20] + bytes(x ^ 0xFF for x in b[20:40]) + b[40:]),
    ],
)
def test_mnist_bad_gzip_is_a_data_error(tmp_path, case, damage):
    write_mnist(tmp_path, gz=True)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(DataError) as err:
        read_mnist_idx(tmp_path)
    _assert_one_line_naming(err, p, "re-download")


def test_cifar_pickle_fuzz_raises_only_data_error(tmp_path):
    """Random byte flips in a valid pickle: the reader loads it or raises DataError, nothing else."""
    folder = tmp_path / "c"
    write_cifar10(folder, n=2)
    good = (folder / "test_batch").read_bytes()
    rng = np.random.default_rng(0)
    for _ in range(300):
        bad = bytearray(good)
        for i in rng.integers(0, len(bad), size=rng.integers(1, 4)):
            bad[i] = rng.integers(0, 256)
        (folder / "test_batch").write_bytes(bytes(bad))
        try:
            read_cifar10_python(folder)
        except DataError as e:
            assert "\n" not in str(e)


# ----------------------------------------------------------------------------------------- cache


def _tiny(name: str = "cifar10", seed: int = 0, source: str = "test") -> Dataset:
    ds = make_synthetic(name, num_train=20, num_test=10, seed=seed)
    return Dataset(name, ds.x_train, ds.y_train, ds.x_test, ds.y_test, num_classes=10, class_names=DATASETS["cifar10"].class_names, source=source)


def test_cache_round_trip(tmp_path):
    ds = _tiny()
    npz = save_cache(tmp_path, ds)
    assert npz == tmp_path / "cifar10.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10.json", "cifar10.npz"]  # no temp files left
    meta = json.loads((tmp_path / "cifar10.json").read_text())
    assert meta["source"] == "test" and len(meta["sha256"]) == 64 and meta["created"]
    assert meta["shapes"]["x_train"] == [20, 32, 32, 3]
    loaded = load_cache(tmp_path, "cifar10")
    assert loaded is not None and loaded.source == f"cache:{npz}"
    assert loaded.class_names == ds.class_names and loaded.num_classes == 10
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(loaded, k), getattr(ds, k))
        assert getattr(loaded, k).dtype == getattr(ds, k).dtype


def test_cache_absent_is_none(tmp_path):
    assert load_cache(tmp_path / "nowhere", "cifar10") is None


def test_cache_checksum_mismatch_warns_and_removes_only_our_file(tmp_path):
    save_cache(tmp_path, _tiny())
    (tmp_path / "user-file.txt").write_text("keep me")
    npz = tmp_path / "cifar10.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))
    with pytest.warns(BadCacheWarning, match="sha256"):
        assert load_cache(tmp_path, "cifar10") is None
    assert not npz.exists() and (tmp_path / "user-file.txt").read_text() == "keep me"


def test_cache_unreadable_npz_with_matching_checksum_warns(tmp_path):
    save_cache(tmp_path, _tiny())
    npz, meta_path = tmp_path / "cifar10.npz", tmp_path / "cifar10.json"
    npz.write_bytes(b"not a zip file")
    meta = json.loads(meta_path.read_text())
    import hashlib

    meta["sha256"] = hashlib.sha256(b"not a zip file").hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(BadCacheWarning):
        assert load_cache(tmp_path, "cifar10") is None


def test_cache_without_our_sidecar_is_left_alone(tmp_path):
    npz = tmp_path / "cifar10.npz"
    np.savez(npz, something=np.zeros(3))  # somebody else's file
    with pytest.warns(BadCacheWarning, match="ignoring"):
        assert load_cache(tmp_path, "cifar10") is None
    assert npz.exists()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NIN_REPRO_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NIN_REPRO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "nin-repro"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "nin-repro"


# --------------------------------------------------------------------------- load_dataset: order


@pytest.fixture
def no_tfds(monkeypatch):
    """Fail the test if load_dataset reaches tensorflow-datasets."""

    def fail(*args, **kwargs):
        raise AssertionError("tfds must not be used here")

    monkeypatch.setattr(tfds_source, "load_tfds", fail)


def test_files_win_over_tfds_and_fill_the_cache(tmp_path, no_tfds):
    want = write_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    ds = load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert ds.source == f"files:{tmp_path / 'data' / 'cifar-10-batches-py'}"
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10
    _assert_same((ds.x_train, ds.y_train, ds.x_test, ds.y_test), want)
    again = load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert again.source.startswith("cache:")
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_cache_wins_over_files(tmp_path, no_tfds):
    write_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    cached = _tiny(source="earlier")
    save_cache(tmp_path / "cache", cached)
    ds = load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert ds.source == f"cache:{tmp_path / 'cache' / 'cifar10.npz'}"
    np.testing.assert_array_equal(ds.x_train, cached.x_train)


def test_bad_cache_is_rebuilt_from_files(tmp_path, no_tfds):
    want = write_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    save_cache(tmp_path / "cache", _tiny())
    npz = tmp_path / "cache" / "cifar10.npz"
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.warns(BadCacheWarning):
        ds = load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert ds.source.startswith("files:")
    _assert_same((ds.x_train, ds.y_train, ds.x_test, ds.y_test), want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_cache(tmp_path / "cache", "cifar10") is not None  # rebuilt, valid


def test_tfds_used_when_no_files_then_cached(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8),
        np.arange(6, dtype=np.int32),
        rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8),
        np.arange(2, dtype=np.int32),
    )
    calls = []
    monkeypatch.setattr(tfds_source, "load_tfds", lambda name, **kw: calls.append((name, kw)) or arrays)
    ds = load_dataset("mnist", data_dir=tmp_path, cache_dir=tmp_path / "cache", download=False, tfds_data_dir=tmp_path / "tfds")
    assert ds.source == "tfds:mnist" and ds.class_names == tuple("0123456789")
    assert calls == [("mnist", {"tfds_data_dir": tmp_path / "tfds", "download": False})]
    assert load_dataset("mnist", cache_dir=tmp_path / "cache").source.startswith("cache:")
    assert len(calls) == 1


@pytest.mark.parametrize("sub", ["mnist", "MNIST/raw", "."])
def test_mnist_files_found_in_usual_layouts(tmp_path, no_tfds, sub):
    write_mnist(tmp_path / "data" / sub, gz=True)
    ds = load_dataset("mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert ds.source.startswith("files:") and ds.x_train.shape == (5, 28, 28, 1)


def test_cifar100_from_files(tmp_path, no_tfds):
    write_cifar100(tmp_path / "cifar-100-python")
    ds = load_dataset("cifar100", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert ds.num_classes == 100 and len(ds.class_names) == 100 and ds.class_names[-1] == "worm"


def test_damaged_files_do_not_fall_through_to_tfds(tmp_path, no_tfds):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_2"):
        load_dataset("cifar10", data_dir=tmp_path, cache_dir=tmp_path / "cache")


def _raise(exc: Exception):
    def f(*args, **kwargs):
        raise exc

    return f


def test_missing_everywhere_without_download_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "load_tfds", _raise(tfds_source.TfdsDataMissing("not prepared")))
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False)
    _assert_one_line_naming(err, tmp_path / "data", "cifar-10-batches-py", "cifar-10-python.tar.gz", "--download")
    assert err.value.exit_code == 2


def test_missing_and_tfds_not_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "load_tfds", _raise(tfds_source.TfdsUnavailable("no tfds")))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "\n" not in msg and "train-images-idx3-ubyte" in msg and "nin-repro[download]" in msg


def test_failed_download_message_is_passed_on(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "load_tfds", _raise(tfds_source.TfdsDataMissing("downloading failed (ConnectionError)")))
    with pytest.raises(DataError, match="downloading failed"):
        load_dataset("mnist", cache_dir=tmp_path / "cache", download=True)


def test_load_tfds_without_tfds_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import raise ImportError
    with pytest.raises(tfds_source.TfdsUnavailable, match=r"pip install 'nin-repro\[download\]'"):
        tfds_source.load_tfds("cifar10")


def test_data_dir_must_be_an_existing_folder(tmp_path, no_tfds):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", data_dir=tmp_path / "nope", cache_dir=tmp_path / "cache")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset("cifar10", data_dir=tmp_path / "file", cache_dir=tmp_path / "cache")


def test_unknown_dataset_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cifar10"):
        load_dataset("imagenet", cache_dir=tmp_path)


def test_unwritable_cache_warns_but_loads(tmp_path, no_tfds):
    write_mnist(tmp_path / "data")
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write the dataset cache"):
        ds = load_dataset("mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert ds.source.startswith("files:")


def test_loading_from_files_and_cache_never_imports_tensorflow(tmp_path):
    write_mnist(tmp_path / "data")
    code = (
        "import sys; from nin_repro.data import load_dataset\n"
        f"a = load_dataset('mnist', data_dir={str(tmp_path / 'data')!r}, cache_dir={str(tmp_path / 'cache')!r})\n"
        f"b = load_dataset('mnist', cache_dir={str(tmp_path / 'cache')!r})\n"
        "assert a.source.startswith('files:') and b.source.startswith('cache:')\n"
        "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ------------------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_valid():
    a = make_synthetic("s", num_train=50, num_test=20, seed=3)
    b = make_synthetic("s", num_train=50, num_test=20, seed=3)
    c = make_synthetic("s", num_train=50, num_test=20, seed=4)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (50, 32, 32, 3) and a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int32
    assert a.source == "synthetic" and a.class_names[:2] == ("class 0", "class 1")
    assert np.bincount(np.concatenate([a.y_train, a.y_test]), minlength=10).tolist() == [7] * 10  # balanced


def test_synthetic_grayscale_shape():
    ds = make_synthetic("s", num_train=30, num_test=0, image_shape=(28, 28, 1), num_classes=3, seed=1)
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_test.shape == (0, 28, 28, 1) and set(ds.y_train) == {0, 1, 2}


def _nearest_mean_accuracy(features_train, y_train, features_test, y_test, k):
    means = np.stack([features_train[y_train == c].mean(0) for c in range(k)])
    pred = np.argmin(((features_test[:, None] - means[None]) ** 2).sum(-1), axis=1)
    return float((pred == y_test).mean())


def test_synthetic_is_learnable_but_not_by_a_pixel_template():
    ds = make_synthetic("s", num_train=500, num_test=200, seed=0)

    def shift_invariant(x):  # |FFT| per channel ignores circular shifts
        return np.log1p(np.abs(np.fft.fft2(x / 255.0, axes=(1, 2)))).reshape(len(x), -1)

    def pixels(x):
        return x.reshape(len(x), -1) / 255.0

    assert _nearest_mean_accuracy(shift_invariant(ds.x_train), ds.y_train, shift_invariant(ds.x_test), ds.y_test, 10) > 0.8
    assert _nearest_mean_accuracy(pixels(ds.x_train), ds.y_train, pixels(ds.x_test), ds.y_test, 10) < 0.7


# ---------------------------------------------------------------------------------- demo digits


def test_demo_digits_split():
    ds = load_demo_digits()
    assert ds.name == "digits5k" and ds.source.startswith("package:nin_repro/data/mnist_5k.npz")
    assert ds.x_train.shape == (4000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert np.bincount(ds.y_train).tolist() == [400] * 10 and np.bincount(ds.y_test).tolist() == [100] * 10
    train_rows = {r.tobytes() for r in ds.x_train}
    assert not any(r.tobytes() in train_rows for r in ds.x_test)  # disjoint
    assert len(set(ds.y_train[:50])) > 5  # shuffled, not sorted by class
    again = load_demo_digits()
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
