"""Input preprocessing fitted once on the training images and applied to train and test alike.

``gcn_zca`` is the paper's CIFAR preprocessing, reproduced from pylearn2
(``scripts/datasets/make_cifar10_gcn_whitened.py``): global contrast normalization with
``scale=55.`` on every image, then ``preprocessing.ZCA()`` (``filter_bias=0.1``, no component
dropped) fitted on the training images only. ``gcn_lcn`` is the paper's SVHN preprocessing
(pylearn2 ``scripts/papers/maxout/svhn_preprocessing.py``, docs/paper-notes.md, "Preprocessing"):
``GlobalContrastNormalization()`` with its defaults (scale 1) on every image, then
``LeCunLCN((32, 32))`` on each of the three channels; it fits nothing. ``scale01`` (pixels / 255)
was our first guess at the paper's MNIST input. ``pixel_mean`` is what Min Lin's
``MnistDataProvider`` feeds the net (mavenlin/cuda-convnet ``Python/convdata.py``, lines 60-70:
``d['data'] - self.data_mean``, the per-pixel training mean) if the batches hold 0-255 pixels, as
cuda-convnet batches do; ``pixel_mean01`` the same on [0, 1] pixels (if the batches held pylearn2's
MNIST, which is scaled to [0, 1]); which one the author had is unverified (docs/paper-notes.md,
"MNIST input"). ``gcn`` is per-image global contrast normalization to a per-pixel RMS of 1
(ours, for the init study). ``standardize`` (per-channel mean/std of the training set) is our
demo's choice, not the paper's; callers that use it say so.

Numpy only: this runs on the host once per run, and the fitted :class:`Preprocessor` is saved so
that evaluation can be repeated later with exactly the same transform.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import numpy as np

from nin_repro import atomic
from nin_repro.errors import DataError, UsageError

KINDS: tuple[str, ...] = ("gcn_zca", "scale01", "standardize", "gcn_lcn", "pixel_mean", "pixel_mean01", "gcn")
# Arrays each kind must carry; checked by from_arrays so a truncated file fails loudly.
_REQUIRED_ARRAYS: dict[str, tuple[str, ...]] = {
    "gcn_zca": ("mean", "whiten"),
    "scale01": (),
    "standardize": ("mean", "std"),
    "gcn_lcn": (),
    "pixel_mean": ("mean",),
    "pixel_mean01": ("mean",),
    "gcn": (),
}
# Images per chunk: bounds host memory (5,000 CIFAR images in float64 are ~120 MB).
CHUNK_IMAGES = 5000
# pylearn2 global_contrast_normalize default: a normalizer below this is replaced by 1.
GCN_MIN_DIVISOR = 1e-8
# Floor for a per-channel std so a constant channel maps to 0 instead of NaN.
_STD_FLOOR = 1e-8
# pylearn2 LeCunLCN defaults (datasets/preprocessing.py, expr lecun_lcn, gaussian_filter).
LCN_KERNEL = 7
LCN_SIGMA = 2.0
LCN_THRESHOLD = 1e-4
SVHN_GCN_SCALE = 1.0  # GlobalContrastNormalization() default


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UsageError(f"unknown preprocessing kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def _chunks(n: int, size: int | None = None) -> list[slice]:
    size = CHUNK_IMAGES if size is None else size  # read at call time so tests can shrink it
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _flatten_ND(x: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, D) in row-major (NHWC) order; a view when possible, no copy or cast."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise DataError(f"expected a batch of images of shape (N, ...), got shape {x.shape}")
    return x.reshape(x.shape[0], -1)


def gcn(x: np.ndarray, scale: float = 55.0) -> np.ndarray:
    """Global contrast normalization of each image, as pylearn2 ``global_contrast_normalize(X, scale)``
    with ``use_std=False, sqrt_bias=0, min_divisor=1e-8``.

    Every image (flattened) has its own mean subtracted and is then divided by
    ``sqrt(sum x²) / scale``, so it ends with L2 norm ``scale``. A normalizer below 1e-8 (a
    constant image) is replaced by 1, as pylearn2 does, so such an image becomes all zeros.

    x: (N, ...) uint8 or float, raw 0-255 pixels (no /255). Returns float32 (N, D).
    """
    x_ND = _flatten_ND(x)
    out_ND = np.empty(x_ND.shape, dtype=np.float32)
    for sl in _chunks(x_ND.shape[0]):
        # float64 per chunk: sums over 3072 values of up to 255² lose digits in float32.
        c_ND = x_ND[sl].astype(np.float64)
        c_ND -= c_ND.mean(axis=1, keepdims=True)
        norm_N1 = np.sqrt((c_ND * c_ND).sum(axis=1, keepdims=True)) / scale
        norm_N1[norm_N1 < GCN_MIN_DIVISOR] = 1.0
        out_ND[sl] = c_ND / norm_N1
    return out_ND


def gaussian_kernel_1d(size: int = LCN_KERNEL, sigma: float = LCN_SIGMA) -> np.ndarray:
    """The 1-D factor g of pylearn2's ``gaussian_filter(size)``: that filter is
    exp(-(i²+j²)/2σ²) at offsets i, j = -size//2..size//2, normalized to sum 1, which is exactly
    ``np.outer(g, g)`` for g = exp(-i²/2σ²) / Σ exp(-i²/2σ²) (the 2-D sum factorizes)."""
    offsets = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return g / g.sum()


def _blur_same(x_NHWC: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Zero-padded 'same' 2-D correlation of every (image, channel) plane with outer(g, g),
    done as two 1-D passes (over H, then over W). The kernel is symmetric, so this is also the
    convolution pylearn2 computes (a 'full' convolution cropped by size//2 on every side)."""
    n, h, w, c = x_NHWC.shape
    k = len(g)
    p = k // 2
    pad = np.zeros((n, h + 2 * p, w, c), dtype=x_NHWC.dtype)
    pad[:, p : p + h] = x_NHWC
    tmp = g[0] * pad[:, 0:h]
    for i in range(1, k):
        tmp += g[i] * pad[:, i : i + h]
    pad = np.zeros((n, h, w + 2 * p, c), dtype=x_NHWC.dtype)
    pad[:, :, p : p + w] = tmp
    out = g[0] * pad[:, :, 0:w]
    for i in range(1, k):
        out += g[i] * pad[:, :, i : i + w]
    return out


def lecun_lcn(x_NHWC: np.ndarray, size: int = LCN_KERNEL, sigma: float = LCN_SIGMA, threshold: float = LCN_THRESHOLD) -> np.ndarray:
    """LeCun local contrast normalization of every channel of every image, as pylearn2's
    ``lecun_lcn`` (maxout-era behaviour: all three channels, not only channel 0).

    With G the normalized ``size``x``size`` Gaussian (σ = ``sigma``) and ⊛ a zero-padded 'same'
    convolution over one image channel X:
      centered = X - G ⊛ X
      r        = sqrt(G ⊛ X²)                 (of the uncentered X, as pylearn2 computes it)
      divisor  = max(r, mean of r over the image's H×W, threshold)
      out      = centered / divisor
    x: float (N, H, W, C). Returns float32 of the same shape; computed in float32, as pylearn2 does.
    """
    x = np.asarray(x_NHWC, dtype=np.float32)
    if x.ndim != 4:
        raise DataError(f"LCN needs images of shape (N, H, W, C), got shape {x.shape}")
    g = gaussian_kernel_1d(size, sigma).astype(np.float32)
    centered = x - _blur_same(x, g)
    r = _blur_same(x * x, g)
    np.sqrt(r, out=r)
    divisor = np.maximum(r, r.mean(axis=(1, 2), keepdims=True))
    np.maximum(divisor, np.float32(threshold), out=divisor)
    centered /= divisor
    return centered


def zca_fit(x_ND: np.ndarray, bias: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Fit pylearn2 ``preprocessing.ZCA(filter_bias=bias)`` with no component dropped.

    μ = mean over rows; C = (X-μ)ᵀ(X-μ)/N + bias·I; C = V diag(λ) Vᵀ; P = V diag(λ^-½) Vᵀ.
    Returns (mean (D,) float64, whiten (D, D) float64); apply as ``(X - mean) @ whiten``.
    """
    x_ND = _flatten_ND(x_ND)
    n, d = x_ND.shape
    if n == 0:
        raise DataError("cannot fit ZCA on zero images")
    chunks = _chunks(n)
    mean_D = np.zeros(d, dtype=np.float64)
    for sl in chunks:
        mean_D += x_ND[sl].sum(axis=0, dtype=np.float64)
    mean_D /= n
    # Covariance by chunks accumulated in float64: the data are centered first, so there is no
    # cancellation, and memory stays at one chunk plus the D×D accumulator.
    cov_DD = np.zeros((d, d), dtype=np.float64)
    for sl in chunks:
        c_ND = x_ND[sl].astype(np.float64) - mean_D
        cov_DD += c_ND.T @ c_ND
    cov_DD /= n
    cov_DD[np.diag_indices(d)] += bias
    eigval_D, eigvec_DD = np.linalg.eigh(cov_DD)
    whiten_DD = (eigvec_DD * eigval_D**-0.5) @ eigvec_DD.T
    # Symmetric by construction; remove the rounding asymmetry so P == Pᵀ exactly.
    whiten_DD = 0.5 * (whiten_DD + whiten_DD.T)
    return mean_D, whiten_DD


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    """A fitted transform: uint8 NHWC images -> float32 NHWC network input.

    arrays by kind:
      gcn_zca:     {"mean": (D,) float32, "whiten": (D, D) float32, "gcn_scale": () float64},
                   D = H·W·C in NHWC order; gcn_scale is optional (55 when absent)
      scale01:     {}
      standardize: {"mean": (C,) float32, "std": (C,) float32}, per channel over the training set
      gcn_lcn:     {} fits nothing; optional 0-d "gcn_scale", "lcn_kernel", "lcn_sigma",
                   "lcn_threshold" (defaults 1, 7, 2, 1e-4) record the constants used
      pixel_mean:  {"mean": (H, W, C) float32}, the per-pixel training mean, 0-255 scale
      pixel_mean01:{"mean": (H, W, C) float32}, the same on the [0, 1] scale
      gcn:         {} fits nothing; GCN of each image to L2 norm sqrt(H·W·C) (per-pixel RMS 1)
    """

    kind: str
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        missing = [k for k in _REQUIRED_ARRAYS[self.kind] if k not in self.arrays]
        if missing:
            raise DataError(f"preprocessor {self.kind!r} is missing arrays: {', '.join(missing)}")

    def apply(self, x_NHWC: np.ndarray) -> np.ndarray:
        """Transform images (uint8 or float 0-255) to float32 of the same shape, in chunks."""
        x_NHWC = np.asarray(x_NHWC)
        if x_NHWC.ndim < 2:
            raise DataError(f"expected images of shape (N, H, W, C), got shape {x_NHWC.shape}")
        self._check_shape(x_NHWC.shape)
        out = np.empty(x_NHWC.shape, dtype=np.float32)
        for sl in _chunks(x_NHWC.shape[0]):
            out[sl] = self._apply_chunk(x_NHWC[sl])
        return out

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.kind == "gcn_zca":
            d = int(np.prod(shape[1:]))
            if d != self.arrays["mean"].shape[0]:
                raise DataError(f"gcn_zca preprocessor was fit on {self.arrays['mean'].shape[0]} values per image, got images of shape {tuple(shape[1:])}")
        elif self.kind == "gcn_lcn":
            if len(shape) != 4:
                raise DataError(f"gcn_lcn works on images of shape (N, H, W, C), got shape {tuple(shape)}")
        elif self.kind in ("pixel_mean", "pixel_mean01"):
            if tuple(shape[1:]) != self.arrays["mean"].shape:
                raise DataError(f"{self.kind} preprocessor was fit on images of shape {self.arrays['mean'].shape}, got {tuple(shape[1:])}")
        elif self.kind == "standardize":
            c = self.arrays["mean"].shape[0]
            if shape[-1] != c:
                raise DataError(f"standardize preprocessor was fit on {c} channels, got images of shape {tuple(shape[1:])}")

    def _apply_chunk(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "scale01":
            return x.astype(np.float32) / np.float32(255.0)
        if self.kind == "pixel_mean":
            return x.astype(np.float32) - self.arrays["mean"]
        if self.kind == "pixel_mean01":
            return x.astype(np.float32) / np.float32(255.0) - self.arrays["mean"]
        if self.kind == "gcn":
            return gcn(x, scale=float(np.sqrt(np.prod(x.shape[1:])))).reshape(x.shape)
        if self.kind == "standardize":
            return (x.astype(np.float32) - self.arrays["mean"]) / self.arrays["std"]
        if self.kind == "gcn_lcn":
            a = self.arrays
            g = gcn(x, scale=float(a.get("gcn_scale", SVHN_GCN_SCALE))).reshape(x.shape)
            return lecun_lcn(
                g,
                size=int(a.get("lcn_kernel", LCN_KERNEL)),
                sigma=float(a.get("lcn_sigma", LCN_SIGMA)),
                threshold=float(a.get("lcn_threshold", LCN_THRESHOLD)),
            )
        # gcn_zca: the GCN scale is stored with the fit so a non-default scale survives save/load.
        scale = float(self.arrays["gcn_scale"]) if "gcn_scale" in self.arrays else 55.0
        g_ND = gcn(x, scale=scale)
        g_ND -= self.arrays["mean"]
        return (g_ND @ self.arrays["whiten"]).reshape(x.shape)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict for np.savez / orbax; ``kind`` is a 0-d unicode array."""
        if "kind" in self.arrays:
            raise DataError("a preprocessor array may not be named 'kind'")
        return {"kind": np.array(self.kind), **{k: np.asarray(v) for k, v in self.arrays.items()}}

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray]) -> "Preprocessor":
        if "kind" not in d:
            raise DataError("preprocessor arrays have no 'kind' entry")
        kind = np.asarray(d["kind"]).item()
        if isinstance(kind, bytes):  # orbax / older savers may hand back bytes
            kind = kind.decode("utf-8")
        arrays = {k: np.array(v) for k, v in d.items() if k != "kind"}
        return cls(kind=str(kind), arrays=arrays)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an .npz atomically: a temporary file in the same folder, then os.replace."""
        atomic.write_with(path, lambda f: np.savez(f, **self.to_arrays()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Preprocessor":
        try:
            with np.load(os.fspath(path), allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read preprocessor file {os.fspath(path)}: {e}") from e
        return cls.from_arrays(d)


def fit_preprocessor(kind: str, x_train_NHWC: np.ndarray, *, gcn_scale: float = 55.0, zca_bias: float = 0.1) -> Preprocessor:
    """Fit a preprocessor of ``kind`` (one of ``KINDS``) on training
    images. ``gcn_scale`` is for gcn_zca; gcn_lcn uses pylearn2's own GCN default (scale 1)."""
    _check_kind(kind)
    x = np.asarray(x_train_NHWC)
    if kind == "scale01":
        return Preprocessor(kind, {})
    if kind == "gcn":  # per image: nothing to fit
        return Preprocessor(kind, {})
    if kind in ("pixel_mean", "pixel_mean01") and x.ndim >= 2 and x.shape[0] > 0:
        mean = x.astype(np.float64).mean(axis=0) / (255.0 if kind == "pixel_mean01" else 1.0)
        return Preprocessor(kind, {"mean": mean.astype(np.float32)})
    if kind == "gcn_lcn":  # nothing to fit: per-image and per-channel statistics only
        return Preprocessor(
            kind,
            {
                "gcn_scale": np.array(SVHN_GCN_SCALE, dtype=np.float64),
                "lcn_kernel": np.array(LCN_KERNEL, dtype=np.int64),
                "lcn_sigma": np.array(LCN_SIGMA, dtype=np.float64),
                "lcn_threshold": np.array(LCN_THRESHOLD, dtype=np.float64),
            },
        )
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"cannot fit {kind!r} on training images of shape {x.shape}")
    if kind == "standardize":
        # Per-channel sums in float64: exact for uint8 at CIFAR/SVHN sizes.
        x_PC = x.reshape(-1, x.shape[-1])
        s_C = np.zeros(x_PC.shape[1], dtype=np.float64)
        ss_C = np.zeros_like(s_C)
        for sl in _chunks(x_PC.shape[0], CHUNK_IMAGES * 1024):
            c = x_PC[sl].astype(np.float64)
            s_C += c.sum(axis=0)
            ss_C += (c * c).sum(axis=0)
        n = x_PC.shape[0]
        mean_C = s_C / n
        std_C = np.sqrt(np.maximum(ss_C / n - mean_C**2, 0.0))
        std_C = np.maximum(std_C, _STD_FLOOR)
        return Preprocessor(kind, {"mean": mean_C.astype(np.float32), "std": std_C.astype(np.float32)})
    # gcn_zca. Features are flattened NHWC (row-major), while pylearn2 flattens CHW. ZCA is
    # equivariant to a permutation Π of the features (μ -> μΠ, C -> ΠᵀCΠ, P -> ΠᵀPΠ), and GCN is
    # permutation invariant, so the output equals pylearn2's up to that same reordering.
    g_ND = gcn(x, scale=gcn_scale)
    mean_D, whiten_DD = zca_fit(g_ND, bias=zca_bias)
    return Preprocessor(
        kind,
        {
            "mean": mean_D.astype(np.float32),
            "whiten": whiten_DD.astype(np.float32),
            "gcn_scale": np.array(gcn_scale, dtype=np.float64),
        },
    )
