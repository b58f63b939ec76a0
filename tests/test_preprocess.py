"""Properties of the preprocessing that do not restate its code: GCN norms, the whitened covariance
C(C + bI)⁻¹, test data transformed with training statistics, and lossless save/load."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nin_repro.errors import UsageError
from nin_repro.preprocess import KINDS, Preprocessor, fit_preprocessor, gcn

BIAS = 0.1
SHAPE_HWC = (4, 4, 3)  # D = 48: small enough for exact linear-algebra checks
D = 48


def _images(n: int, seed: int, shift: int = 0) -> np.ndarray:
    """Correlated uint8 NHWC images: a smooth per-image pattern plus noise, so the covariance has
    a spread of eigenvalues (large and near zero) around the 0.1 bias."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, 1, 1, 3)).astype(np.float64)
    ramp = np.linspace(-1, 1, 4)[None, :, None, None] * rng.normal(0, 40, size=(n, 1, 1, 1))
    noise = rng.normal(0, 8, size=(n, *SHAPE_HWC))
    return np.clip(base + ramp + noise + shift, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def train() -> np.ndarray:
    return _images(500, seed=0)


@pytest.fixture(scope="module")
def zca(train: np.ndarray) -> Preprocessor:
    return fit_preprocessor("gcn_zca", train)


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(
        np.uint8,
        st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 8), st.integers(1, 3)),
        elements=st.integers(0, 255),
    )
)
def test_gcn_images_have_zero_mean_and_norm_55_or_are_constant(x: np.ndarray) -> None:
    out = gcn(x)
    assert out.dtype == np.float32 and out.shape == (x.shape[0], int(np.prod(x.shape[1:])))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-4)
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    constant = (x.reshape(x.shape[0], -1) == x.reshape(x.shape[0], -1)[:, :1]).all(axis=1)
    # A constant image has nothing left after centering: min_divisor keeps it at 0, not NaN.
    np.testing.assert_allclose(norms[constant], 0.0, atol=1e-6)
    np.testing.assert_allclose(norms[~constant], 55.0, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(st.floats(0.5, 100.0), st.integers(0, 2**31 - 1))
def test_gcn_scale_sets_norm_and_float_input_is_accepted(scale: float, seed: int) -> None:
    x = np.random.default_rng(seed).uniform(0, 255, size=(3, 2, 5, 3))
    np.testing.assert_allclose(np.linalg.norm(gcn(x, scale=scale), axis=1), scale, rtol=1e-5)


def test_gcn_constant_images_become_zero() -> None:
    x = np.stack([np.zeros((8, 8, 3)), np.full((8, 8, 3), 255)]).astype(np.uint8)
    assert np.array_equal(gcn(x), np.zeros((2, 192), np.float32))


def test_whitened_training_covariance_is_C_over_C_plus_bias(train: np.ndarray, zca: Preprocessor) -> None:
    g = gcn(train).astype(np.float64)
    gc = g - g.mean(axis=0)
    cov = gc.T @ gc / len(g)
    expected = cov @ np.linalg.inv(cov + BIAS * np.eye(D))

    y = zca.apply(train).reshape(len(train), -1).astype(np.float64)
    yc = y - y.mean(axis=0)
    np.testing.assert_allclose(yc.T @ yc / len(y), expected, atol=2e-4)
    # Whitening is a real effect here: the covariance spans several orders of magnitude.
    eig = np.linalg.eigvalsh(cov)
    assert eig.max() > 100 * BIAS and eig.min() < BIAS


def test_whitening_matrix_is_symmetric_and_output_keeps_shape(train: np.ndarray, zca: Preprocessor) -> None:
    w = zca.arrays["whiten"]
    assert w.shape == (D, D) and zca.arrays["mean"].shape == (D,)
    assert np.array_equal(w, w.T)
    out = zca.apply(train[:7])
    assert out.shape == (7, *SHAPE_HWC) and out.dtype == np.float32


def test_test_set_uses_training_statistics(train: np.ndarray, zca: Preprocessor) -> None:
    test = _images(200, seed=1, shift=30)
    expected = (gcn(test) - zca.arrays["mean"]) @ zca.arrays["whiten"]
    got = zca.apply(test)
    np.testing.assert_allclose(got.reshape(len(test), -1), expected, rtol=1e-5, atol=1e-4)
    # A transform fit on the test images themselves would give something else.
    own = fit_preprocessor("gcn_zca", test).apply(test)
    assert not np.allclose(own, got, atol=1e-2)


def test_apply_is_chunk_independent(train: np.ndarray, zca: Preprocessor, monkeypatch: pytest.MonkeyPatch) -> None:
    import nin_repro.preprocess as pp

    whole = zca.apply(train)
    monkeypatch.setattr(pp, "CHUNK_IMAGES", 37)
    np.testing.assert_allclose(zca.apply(train), whole, rtol=1e-5, atol=2e-5)  # float32 BLAS blocking
    mean, whiten = pp.zca_fit(gcn(train))
    np.testing.assert_allclose(mean.astype(np.float32), zca.arrays["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whiten.astype(np.float32), zca.arrays["whiten"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_and_array_round_trips_give_identical_outputs(kind: str, train: np.ndarray, tmp_path) -> None:
    pre = fit_preprocessor(kind, train)
    x = _images(20, seed=2)
    ref = pre.apply(x)

    path = tmp_path / "sub" / "pre.npz"
    pre.save(path)
    pre.save(path)  # overwriting an existing file works too
    assert [p.name for p in path.parent.iterdir()] == ["pre.npz"]  # no temporary left behind
    loaded = Preprocessor.load(path)
    assert loaded.kind == kind
    assert np.array_equal(loaded.apply(x), ref)

    again = Preprocessor.from_arrays(pre.to_arrays())
    assert again.kind == kind and np.array_equal(again.apply(x), ref)
    # kind stored as bytes (as some checkpoint writers return it) reads back the same
    arrays = pre.to_arrays()
    arrays["kind"] = np.array(kind.encode())
    assert Preprocessor.from_arrays(arrays).kind == kind


def test_scale01_maps_0_to_0_and_255_to_1() -> None:
    x = np.array([0, 255, 51], np.uint8).reshape(1, 1, 3, 1)
    pre = fit_preprocessor("scale01", x)
    assert pre.arrays == {}
    np.testing.assert_allclose(pre.apply(x).ravel(), [0.0, 1.0, 0.2], atol=1e-7)


def test_standardize_gives_zero_mean_unit_std_per_channel_on_train(train: np.ndarray) -> None:
    pre = fit_preprocessor("standardize", train)
    assert pre.arrays["mean"].shape == (3,) and pre.arrays["std"].shape == (3,)
    out = pre.apply(train).astype(np.float64)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, rtol=1e-4)


def test_unknown_kind_is_a_usage_error_listing_the_valid_kinds(train: np.ndarray) -> None:
    with pytest.raises(UsageError) as e:
        fit_preprocessor("whiten_everything", train)
    msg = str(e.value)
    assert "\n" not in msg and all(k in msg for k in KINDS)
    with pytest.raises(UsageError):
        Preprocessor.from_arrays({"kind": np.array("nope")})
