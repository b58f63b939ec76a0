"""SVHN (Table 3): the .mat reader, the paper's train/validation split, GCN + LeCun LCN, the
load_dataset path end to end on tiny files, and the network's parameter count."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

scipy_io = pytest.importorskip("scipy.io")

from nin_repro.data import DATASETS, load_dataset, svhn_split  # noqa: E402
from nin_repro.data.readers import find_original_folder, read_svhn_file, read_svhn_mat  # noqa: E402
from nin_repro.errors import DataError  # noqa: E402
from nin_repro.preprocess import fit_preprocessor, gcn, lecun_lcn  # noqa: E402

# Smallest sets the split accepts, plus a few: 400 (train) / 200 (extra) per class are held out.
PER_CLASS_TRAIN, PER_CLASS_EXTRA, N_TEST = 403, 202, 20


def _file_labels(digits: np.ndarray) -> np.ndarray:
    """Digits 0..9 as the .mat files store them: 1..10, with 10 for the digit 0, shape (N, 1)."""
    return np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)


def _write_mat(path: Path, x_NHWC: np.ndarray, digits: np.ndarray, **kw) -> None:
    """Write a file in the original layout: X uint8 (32, 32, 3, N), y (N, 1) in 1..10."""
    scipy_io.savemat(path, {"X": np.moveaxis(x_NHWC, 0, -1), "y": _file_labels(digits), **kw})


def _digits(per_class: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(10), per_class))


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def svhn_files(tmp_path_factory):
    """A folder with tiny train/test/extra files; returns (folder, {split: (x, digits)})."""
    folder = tmp_path_factory.mktemp("data") / "svhn"
    folder.mkdir()
    splits = {
        "train": (_images(10 * PER_CLASS_TRAIN, 1), _digits(PER_CLASS_TRAIN, 1)),
        "extra": (_images(10 * PER_CLASS_EXTRA, 2), _digits(PER_CLASS_EXTRA, 2)),
        "test": (_images(N_TEST, 3), np.arange(N_TEST) % 10),
    }
    for split, (x, d) in splits.items():
        _write_mat(folder / f"{split}_32x32.mat", x, d)
    return folder, splits


# ------------------------------------------------------------------------------------- reader


def test_reader_gives_nhwc_pixels_and_maps_label_10_to_0(tmp_path):
    x = _images(5, 0)
    digits = np.array([0, 1, 9, 0, 5])
    _write_mat(tmp_path / "t.mat", x, digits)
    # The file's X[h, w, c, n] is the NHWC pixel x[n, h, w, c].
    raw = scipy_io.loadmat(tmp_path / "t.mat")
    assert raw["X"].shape == (32, 32, 3, 5) and raw["X"][7, 3, 2, 4] == x[4, 7, 3, 2]
    assert raw["y"].ravel().tolist() == [10, 1, 9, 10, 5]
    got_x, got_y = read_svhn_file(tmp_path / "t.mat")
    assert got_x.dtype == np.uint8 and got_x.flags["C_CONTIGUOUS"] and np.array_equal(got_x, x)
    assert got_y.dtype == np.int32 and got_y.tolist() == [0, 1, 9, 0, 5]


def test_reader_accepts_double_labels_as_matlab_often_stores_them(tmp_path):
    scipy_io.savemat(tmp_path / "t.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[10.0], [3.0]])})
    assert read_svhn_file(tmp_path / "t.mat")[1].tolist() == [0, 3]


def test_read_svhn_mat_reads_all_three_splits(svhn_files):
    folder, splits = svhn_files
    got = read_svhn_mat(folder)
    assert sorted(got) == ["extra", "test", "train"]
    for split, (x, d) in splits.items():
        assert np.array_equal(got[split][0], x) and np.array_equal(got[split][1], d)


def _good_raw(tmp_path: Path) -> bytes:
    _write_mat(tmp_path / "good.mat", _images(4, 0), np.array([1, 2, 3, 0]))
    return (tmp_path / "good.mat").read_bytes()


CORRUPTIONS = {
    "empty": lambda raw, p: p.write_bytes(b""),
    "short_header": lambda raw, p: p.write_bytes(raw[:10]),
    "truncated": lambda raw, p: p.write_bytes(raw[: len(raw) // 2]),
    "garbage": lambda raw, p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()),
    "hdf5_v73": lambda raw, p: p.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 512),
    "no_X": lambda raw, p: scipy_io.savemat(p, {"y": _file_labels(np.arange(4))}),
    "no_y": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((32, 32, 3, 4), np.uint8)}),
    "gray_X": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((32, 32, 1, 4), np.uint8), "y": _file_labels(np.arange(4))}),
    "float_X": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((32, 32, 3, 4)), "y": _file_labels(np.arange(4))}),
    "nhwc_X": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((4, 32, 32, 3), np.uint8), "y": _file_labels(np.arange(4))}),
    "label_0": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]], np.uint8)}),
    "label_11": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [3]], np.uint8)}),
    "label_half": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1.5], [3.0]])}),
    "too_few_labels": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": _file_labels(np.arange(3))}),
    "text_labels": lambda raw, p: scipy_io.savemat(p, {"X": np.zeros((32, 32, 3, 1), np.uint8), "y": "a"}),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_damaged_file_is_a_one_line_data_error_naming_it(tmp_path, case):
    raw = _good_raw(tmp_path)
    path = tmp_path / "train_32x32.mat"
    CORRUPTIONS[case](raw, path)
    with pytest.raises(DataError) as err:
        read_svhn_file(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg


def test_files_cut_short_anywhere_raise_only_data_error(tmp_path):
    """A partial download, cut at random places. (Random byte flips are not tested: a flipped
    element-type byte can crash scipy's loadmat itself, outside Python's reach.)"""
    raw = _good_raw(tmp_path)
    path = tmp_path / "f.mat"
    for cut in np.random.default_rng(1).integers(0, len(raw) - 200, 40):
        path.write_bytes(raw[:cut])
        with pytest.raises(DataError):
            read_svhn_file(path)


def test_missing_file_names_all_three(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(_good_raw(tmp_path))
    with pytest.raises(DataError, match="test_32x32.mat, extra_32x32.mat"):
        read_svhn_mat(tmp_path)


@pytest.mark.parametrize("sub", ["svhn", "SVHN", "."])
def test_svhn_folder_is_found_by_its_train_file(tmp_path, sub):
    folder = tmp_path / sub
    folder.mkdir(exist_ok=True)
    assert find_original_folder("svhn", tmp_path) is None
    (folder / "train_32x32.mat").write_bytes(b"")
    assert find_original_folder("svhn", tmp_path) == folder


# -------------------------------------------------------------------------------------- split


def _indexed(n: int) -> np.ndarray:
    """Images whose pixels spell their own index, so each output image can be traced back."""
    idx = np.arange(n)
    return np.stack([idx % 256, (idx // 256) % 256, idx // 65536], axis=1).astype(np.uint8).reshape(n, 1, 1, 3)


def _index_of(x: np.ndarray) -> np.ndarray:
    v = x.reshape(len(x), 3).astype(np.int64)
    return v[:, 0] + 256 * v[:, 1] + 65536 * v[:, 2]


@pytest.fixture(scope="module")
def split_inputs():
    y_t, y_e = _digits(420, 5), _digits(230, 6)
    # Extra images are offset so that train and extra indices never coincide.
    return _indexed(len(y_t)), y_t, _indexed(len(y_t) + len(y_e))[len(y_t) :], y_e


def test_split_sizes_and_per_class_counts(split_inputs):
    x_t, y_t, x_e, y_e = split_inputs
    x_tr, y_tr, x_val, y_val = svhn_split(x_t, y_t, x_e, y_e)
    assert len(x_val) == len(y_val) == 6000
    assert len(x_tr) == len(y_tr) == len(y_t) + len(y_e) - 6000
    assert x_tr.dtype == x_val.dtype == np.uint8 and y_tr.dtype == y_val.dtype == np.int32
    val_idx, tr_idx = _index_of(x_val), _index_of(x_tr)
    from_train = val_idx < len(y_t)
    assert np.array_equal(np.bincount(y_val[from_train], minlength=10), np.full(10, 400))
    assert np.array_equal(np.bincount(y_val[~from_train], minlength=10), np.full(10, 200))
    # Disjoint, and together exactly the inputs, each image with its own label.
    assert not set(val_idx) & set(tr_idx)
    assert np.array_equal(np.sort(np.concatenate([val_idx, tr_idx])), np.arange(len(y_t) + len(y_e)))
    y_all = np.concatenate([y_t, y_e])
    assert np.array_equal(y_all[val_idx], y_val) and np.array_equal(y_all[tr_idx], y_tr)
    # On the real files (73,257 train + 531,131 extra digits): the training-set size the time estimates use.
    from nin_repro.reproduce import TRAIN_SIZES

    assert TRAIN_SIZES["svhn"] == 73_257 + 531_131 - 6000


def test_split_is_deterministic_and_depends_on_the_seed(split_inputs):
    a = svhn_split(*split_inputs)
    b = svhn_split(*split_inputs)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    c = svhn_split(*split_inputs, seed=0)
    assert not np.array_equal(a[2], c[2])


def test_split_draws_pylearn2s_validation_images(split_inputs):
    """pylearn2 datasets/svhn.py: one RandomState(322); for file labels 1..10, shuffle that class's
    indices and keep the first 400 of train, then the same for extra with 200."""
    x_t, y_t, x_e, y_e = split_inputs
    rng = np.random.RandomState(322)
    expected = []
    for y_file, k, offset in ((_file_labels(y_t), 400, 0), (_file_labels(y_e), 200, len(y_t))):
        for i in range(1, 11):
            index = np.nonzero(y_file == i)[0]
            rng.shuffle(index)
            expected += list(index[:k] + offset)
    assert set(_index_of(svhn_split(x_t, y_t, x_e, y_e)[2])) == set(expected)


@pytest.mark.parametrize("which", ["train", "extra"])
def test_split_refuses_too_few_images_of_a_class(split_inputs, which):
    x_t, y_t, x_e, y_e = split_inputs
    if which == "train":
        keep = ~((y_t == 3) & (np.cumsum(y_t == 3) > 399))
        x_t, y_t = x_t[keep], y_t[keep]
    else:
        keep = y_e != 7
        x_e, y_e = x_e[keep], y_e[keep]
    with pytest.raises(DataError, match="needs at least 400 images of every class in train and 200 in extra") as err:
        svhn_split(x_t, y_t, x_e, y_e)
    assert which in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------- GCN + LCN


def _lcn_reference(img_HWC: np.ndarray, size: int = 7, sigma: float = 2.0, threshold: float = 1e-4) -> np.ndarray:
    """LeCun LCN by its definition, one pixel at a time (float64, explicit zero padding)."""
    h, w, c = img_HWC.shape
    m = size // 2
    kern = np.array([[np.exp(-((i - m) ** 2 + (j - m) ** 2) / (2 * sigma**2)) for j in range(size)] for i in range(size)])
    kern /= kern.sum()
    out = np.zeros((h, w, c))
    for ch in range(c):
        mean = np.zeros((h, w))
        r = np.zeros((h, w))
        for y in range(h):
            for x in range(w):
                s = s2 = 0.0
                for i in range(size):
                    for j in range(size):
                        yy, xx = y + i - m, x + j - m
                        if 0 <= yy < h and 0 <= xx < w:  # outside the image counts as 0
                            v = float(img_HWC[yy, xx, ch])
                            s += kern[i, j] * v
                            s2 += kern[i, j] * v * v
                mean[y, x] = s
                r[y, x] = np.sqrt(s2)
        r_mean = r.mean()
        for y in range(h):
            for x in range(w):
                out[y, x, ch] = (img_HWC[y, x, ch] - mean[y, x]) / max(r[y, x], r_mean, threshold)
    return out


def test_lcn_matches_its_definition_on_every_channel():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.02, size=(9, 11, 3))
    img[:4, :5, 1] += 0.3  # a bright corner: there r > mean(r), elsewhere mean(r) wins
    img[:, :, 2] *= 1e-6  # a faint channel: the 1e-4 threshold is the divisor
    ref = _lcn_reference(img)
    got = lecun_lcn(img[None])[0]
    assert got.dtype == np.float32 and got.shape == img.shape
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-7)
    # Every channel was normalized (pylearn2 HEAD's bug would leave channels 1 and 2 untouched).
    for ch in range(3):
        assert not np.allclose(got[..., ch], img[..., ch], atol=1e-3 * np.abs(img[..., ch]).max())


def test_lcn_of_a_constant_zero_image_is_zero():
    assert np.array_equal(lecun_lcn(np.zeros((2, 5, 5, 3))), np.zeros((2, 5, 5, 3), np.float32))


def test_gcn_lcn_preprocessor_shape_dtype_and_chunking(monkeypatch):
    import nin_repro.preprocess as pp

    x = _images(12, 4)
    pre = fit_preprocessor("gcn_lcn", x)
    out = pre.apply(x)
    assert out.shape == x.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    # GCN with pylearn2's defaults (scale 1: each image has L2 norm 1), then LCN.
    np.testing.assert_allclose(out, lecun_lcn(gcn(x, scale=1.0).reshape(x.shape)), rtol=1e-6, atol=1e-7)
    monkeypatch.setattr(pp, "CHUNK_IMAGES", 5)
    assert np.array_equal(pre.apply(x), out)
    with pytest.raises(DataError, match="N, H, W, C"):
        pre.apply(x.reshape(12, -1))


# ------------------------------------------------------------------------ load_dataset + model


def test_load_dataset_svhn_from_files_then_cache(svhn_files, tmp_path, monkeypatch):
    import sys

    folder, splits = svhn_files
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # files must suffice
    ds = load_dataset("svhn", data_dir=folder.parent, cache_dir=tmp_path)
    n_train, n_extra = 10 * PER_CLASS_TRAIN, 10 * PER_CLASS_EXTRA
    assert ds.source == f"files:{folder}" and ds.num_classes == 10 and DATASETS["svhn"].class_names[0] == "0"
    assert len(ds.x_train) == n_train + n_extra - 6000 and len(ds.x_val) == 6000
    assert ds.image_shape == (32, 32, 3) and ds.x_val.shape == (6000, 32, 32, 3)
    assert np.array_equal(ds.x_test, splits["test"][0]) and np.array_equal(ds.y_test, splits["test"][1])
    expected = svhn_split(*splits["train"], *splits["extra"])
    assert all(np.array_equal(a, b) for a, b in zip((ds.x_train, ds.y_train, ds.x_val, ds.y_val), expected))

    again = load_dataset("svhn", cache_dir=tmp_path)
    assert again.source.startswith("cache:")
    assert np.array_equal(again.x_train, ds.x_train) and np.array_equal(again.x_val, ds.x_val) and np.array_equal(again.y_val, ds.y_val)

    (tmp_path / "svhn-valid.npz").unlink()
    with pytest.warns(UserWarning, match="validation images are not in the cache"):
        partial = load_dataset("svhn", cache_dir=tmp_path)
    assert partial.x_val is None and np.array_equal(partial.x_train, ds.x_train)


def test_load_dataset_svhn_damaged_file_does_not_fall_through(svhn_files, tmp_path):
    folder, _ = svhn_files
    bad = tmp_path / "svhn"
    bad.mkdir()
    for f in folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "extra_32x32.mat").write_bytes(b"not a mat file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="extra_32x32.mat"):
            load_dataset("svhn", data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_tfds_records_are_put_back_in_file_order():
    from nin_repro.data.tfds_source import TFDS_BUILDERS, _to_numpy

    class FakeTfds:
        @staticmethod
        def as_numpy(batches):
            return batches

    order = np.random.default_rng(0).permutation(25)
    ids = np.array([f"train_{i:06d}".encode() for i in order])
    images = _indexed(25)[order]
    batches = [{"image": images[s], "label": (order[s] % 10), "id": ids[s]} for s in (slice(0, 10), slice(10, 25))]
    info = TFDS_BUILDERS["svhn"]
    x, y = _to_numpy(batches, FakeTfds, dataclasses.replace(info, image_shape=(1, 1, 3)), "fake")
    assert np.array_equal(_index_of(x), np.arange(25)) and np.array_equal(y, np.arange(25) % 10)


def test_svhn_network_has_the_papers_parameter_count():
    from flax import nnx

    from nin_repro.models import NIN, count_params
    from nin_repro.recipe import load_experiment

    svhn = load_experiment("svhn")
    table = svhn.TABLE
    assert table.name == "svhn" and table.variants[0].recipe.preprocess == "gcn_lcn"
    assert table.variants[0].recipe.dataset == "svhn" and not table.variants[0].recipe.augment
    assert table.paper_row("nin_dropout").error == 2.35
    assert count_params(nnx.eval_shape(lambda: NIN(svhn.MODEL, rngs=nnx.Rngs(0)))) == 1_986_026


def test_validation_images_and_labels_come_together():
    from nin_repro.data import Dataset, validate_dataset

    x = np.zeros((3, 32, 32, 3), np.uint8)
    y = np.zeros(3, np.int32)
    with pytest.raises(DataError, match="both"):
        validate_dataset(Dataset("svhn", x, y, x, y, num_classes=10, class_names=(), source="t", x_val=x))
    with pytest.raises(DataError, match="validation"):
        validate_dataset(Dataset("svhn", x, y, x, y, num_classes=10, class_names=(), source="t", x_val=x[:, :16], y_val=y))
    assert validate_dataset(Dataset("svhn", x, y, x, y, num_classes=10, class_names=(), source="t", x_val=x, y_val=y)).x_val is x
