"""Why global average pooling works, measured on a trained network (the paper's Sec. 4.6 and 5).

The computations behind `nin-repro figure4`, `cam` and `gap-claims`; drawing is in
``figures``, the commands in ``cli``. Everything takes a ``Loaded`` run (parameters, recipe and
fitted preprocessing of a saved run folder) and raw uint8 images:

* ``class_activation_maps``: the maps whose spatial mean is the class score. For a pure GAP
  NIN they are the last layer's maps; for GAP -> Dense, CAM_c = sum_k w_kc f_k (Zhou et al. 2016),
  so mean_hw(CAM_c) + b_c = logit_c.
* ``pointing_hits``: does the peak of a class map (upsampled to the input) fall inside an
  object's box? Scored on real digits pasted at random positions on a larger canvas
  (``paste_digits``), against the centre-guess baseline.
* ``size_sweep`` / ``translation_sweep`` / ``train_test_gap``: the claims of Sec. 3.2 (any input
  size, robustness to translations, GAP as a structural regularizer).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nin_repro.errors import UsageError
from nin_repro.evaluate import EvalSet, evaluate, make_eval_fn
from nin_repro.models import NIN, ConvNet, count_params
from nin_repro.preprocess import Preprocessor
from nin_repro.recipe import Recipe
from nin_repro.xla_options import jit_repeated

CAM_HEADS = ("gap", "gap_dense")


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A saved run, ready to evaluate."""

    run_dir: Path
    record: dict  # run.json
    recipe: Recipe
    pre: Preprocessor
    graphdef: object
    params: object

    @property
    def model(self) -> NIN | ConvNet:
        return nnx.merge(self.graphdef, self.params)

    @property
    def head(self) -> str:
        return self.recipe.model.head

    @property
    def smoke(self) -> bool:
        return bool(self.record.get("smoke"))

    @property
    def label(self) -> str:
        r = self.record
        return f"{r.get('table', '?')}/{r.get('variant', '?')} seed {r.get('seed', '?')}"


def load(run_dir: str | Path) -> Loaded:
    from nin_repro.reproduce import load_run
    from nin_repro.train import load_params

    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file() or not (run_dir / "params").is_dir():
        raise UsageError(f"{run_dir} is not a finished run folder (needs run.json and params/)")
    record, recipe, pre = load_run(run_dir)
    graphdef, params = load_params(run_dir / "params", recipe)
    return Loaded(run_dir, record, recipe, pre, graphdef, params)


def caption(run: Loaded) -> str:
    """What the model behind a figure is, in the words the figure must carry."""
    if run.smoke:
        return "untrained smoke model — not evidence"
    text = f"{run.label}"
    if run.recipe.dataset == "digits5k":
        text = f"demo model on 5k digits ({run.label})"
    epochs = run.record.get("result", {}).get("epochs")
    if run.recipe.epochs is not None and epochs is not None:
        text += f", {epochs:g} epochs (shortened)"
    return text


# --------------------------------------------------------------------------- maps


def _cam_weights(model) -> jax.Array | None:
    """(features, classes) weights turning the last maps into CAMs; None for a pure GAP head."""
    head = model.config.head
    if head == "gap":
        return None
    if head == "gap_dense":
        return model.dense.kernel[...]
    raise UsageError(f"class maps need a GAP head ({' or '.join(CAM_HEADS)}); this run has head {head!r}")


@functools.partial(jit_repeated, static_argnums=0)
def _maps_logits(graphdef, params, x_BHWC):
    model = nnx.merge(graphdef, params)
    feats_BHWF = model.class_maps(x_BHWC).astype(jnp.float32)
    w_FK = _cam_weights(model)
    maps_BHWK = feats_BHWF if w_FK is None else cam(feats_BHWF, w_FK)
    return maps_BHWK, model(x_BHWC)


def cam(feats_BHWF: jax.Array, w_FK: jax.Array) -> jax.Array:
    """Zhou et al.'s class activation maps: CAM_c(h, w) = sum_k w_kc f_k(h, w)."""
    return jnp.einsum("bhwf,fk->bhwk", feats_BHWF, w_FK.astype(feats_BHWF.dtype))


def class_activation_maps(run: Loaded, x_NHWC: np.ndarray, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """(maps (N, h, w, classes), logits (N, classes)) for preprocessed images, in batches."""
    _cam_weights(run.model)  # a clear error for FC heads before any compute
    maps, logits = [], []
    for i in range(0, len(x_NHWC), batch_size):
        m, lg = _maps_logits(run.graphdef, run.params, jnp.asarray(x_NHWC[i : i + batch_size]))
        maps.append(np.asarray(m))
        logits.append(np.asarray(lg))
    return np.concatenate(maps), np.concatenate(logits)


def map_geometry(config) -> tuple[int, int]:
    """(stride, offset): map cell j is centred on input pixel stride * j + offset. Every conv
    keeps the size ("same" padding); each 3x3/2 pool with Caffe's alignment (no padding in front)
    centres output j on its input 2j + 1."""
    stride, offset = 1, 0
    pools = [b.pool for b in config.blocks] if hasattr(config, "blocks") else [c.pool for c in config.convs]
    for pool in pools:
        if pool != "none":
            stride, offset = 2 * stride, offset + stride  # centre 2j + 1 of the previous grid
    return stride, offset


def _interp_matrix(out_size: int, in_size: int, stride: int, offset: int) -> np.ndarray:
    """(out_size, in_size) linear-interpolation weights placing cell j at stride * j + offset."""
    u = np.clip((np.arange(out_size) - offset) / stride, 0, in_size - 1)
    i0 = np.floor(u).astype(int)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w = (u - i0).astype(np.float32)
    a = np.zeros((out_size, in_size), np.float32)
    np.add.at(a, (np.arange(out_size), i0), 1 - w)
    np.add.at(a, (np.arange(out_size), i1), w)
    return a


def upsample(maps_NhwK: np.ndarray, hw: tuple[int, int], geometry: tuple[int, int]) -> np.ndarray:
    """Maps interpolated (bilinear) to the input size, each cell placed at the input pixel its
    receptive field is centred on (``map_geometry``), so peaks land where the network looks."""
    _, h, w, _ = maps_NhwK.shape
    a_Hh = _interp_matrix(hw[0], h, *geometry)
    b_Ww = _interp_matrix(hw[1], w, *geometry)
    return np.einsum("Hh,nhwk,Ww->nHWk", a_Hh, np.asarray(maps_NhwK, np.float32), b_Ww)


def strongest_map_agreement(maps_NhwK: np.ndarray, logits_NK: np.ndarray) -> float:
    """How often the class whose map has the highest peak is also the predicted class (the
    prediction is the highest *mean*, so the two can differ)."""
    strongest = maps_NhwK.max(axis=(1, 2)).argmax(-1)
    return float(np.mean(strongest == logits_NK.argmax(-1)))


# --------------------------------------------------------------------------- pointing


def pointing_hits(maps_NhwK: np.ndarray, classes_N: np.ndarray, boxes_N4: np.ndarray, input_hw: tuple[int, int], geometry: tuple[int, int]) -> np.ndarray:
    """Whether the peak of each image's class map, upsampled to ``input_hw`` (``upsample``),
    lies in its box (y0, x0, y1, x1), ends exclusive."""
    n = len(classes_N)
    chosen = maps_NhwK[np.arange(n), :, :, classes_N][..., None]  # (N, h, w, 1)
    up = upsample(chosen, input_hw, geometry)[..., 0]
    flat = up.reshape(n, -1).argmax(-1)
    py, px = np.unravel_index(flat, input_hw)
    y0, x0, y1, x1 = boxes_N4.T
    return (py >= y0) & (py < y1) & (px >= x0) & (px < x1)


def centre_hits(boxes_N4: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """The baseline that always points at the canvas centre."""
    cy, cx = (input_hw[0] - 1) / 2, (input_hw[1] - 1) / 2
    y0, x0, y1, x1 = boxes_N4.T
    return (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)


def paste_digits(digits_NHWC: np.ndarray, canvas: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each digit pasted at a random position on a ``canvas`` x ``canvas`` black image; returns
    (canvases uint8, boxes (y0, x0, y1, x1) = the digit's ink, i.e. its nonzero pixels)."""
    n, h, w, c = digits_NHWC.shape
    if canvas < max(h, w):
        raise UsageError(f"--canvas {canvas} is smaller than the images ({h}x{w})")
    rng = np.random.default_rng(seed)
    ys, xs = rng.integers(0, canvas - h + 1, n), rng.integers(0, canvas - w + 1, n)
    out = np.zeros((n, canvas, canvas, c), digits_NHWC.dtype)
    boxes = np.zeros((n, 4), np.int64)
    for i, (y, x) in enumerate(zip(ys, xs)):
        out[i, y : y + h, x : x + w] = digits_NHWC[i]
        rows, cols = np.nonzero(digits_NHWC[i].max(-1))
        boxes[i] = (y + rows.min(), x + cols.min(), y + rows.max() + 1, x + cols.max() + 1) if rows.size else (y, x, y + h, x + w)
    return out, boxes


@dataclasses.dataclass(frozen=True)
class Localization:
    canvas: int
    num_images: int
    pointing_predicted: float  # peak of the predicted class's map inside the digit's box
    pointing_true: float  # same with the true class's map
    centre_baseline: float
    canvas_error: float  # classification error on the canvases (no retraining)


def localization(run: Loaded, digits_NHWC: np.ndarray, labels_N: np.ndarray, canvas: int, seed: int = 0) -> Localization:
    """Pointing accuracy of the class maps on digits pasted at random positions."""
    if run.recipe.model.in_channels != 1 or run.pre.kind not in ("standardize", "scale01"):
        raise UsageError("localization pastes digits on a canvas: it needs a digit model (mnist or demo run)")
    canvases, boxes = paste_digits(digits_NHWC, canvas, seed)
    maps, logits = class_activation_maps(run, run.pre.apply(canvases))
    pred = logits.argmax(-1)
    hw, geo = (canvas, canvas), map_geometry(run.recipe.model)
    return Localization(
        canvas=canvas,
        num_images=len(labels_N),
        pointing_predicted=float(pointing_hits(maps, pred, boxes, hw, geo).mean()),
        pointing_true=float(pointing_hits(maps, labels_N, boxes, hw, geo).mean()),
        centre_baseline=float(centre_hits(boxes, hw).mean()),
        canvas_error=float(np.mean(pred != labels_N)),
    )


# --------------------------------------------------------------------------- the GAP claims


def accepts_size(run: Loaded, hw: tuple[int, int]) -> bool:
    """Whether the network runs at input size ``hw`` without retraining: only a GAP head on
    convolutions does (an FC layer or a locally connected layer is built for one size)."""
    cfg = run.recipe.model
    return tuple(hw) == tuple(cfg.input_hw) or (isinstance(run.model, NIN) and cfg.head in CAM_HEADS)


def head_params(run: Loaded) -> int:
    dense = run.model.dense
    return 0 if dense is None else count_params(dense)


def inference_params(run: Loaded) -> int:
    """Parameters used at inference (an auxiliary head is discarded)."""
    model = run.model
    aux = getattr(model, "aux", None)
    return count_params(model) - (count_params(aux) if aux is not None else 0)


@functools.lru_cache(maxsize=8)
def _eval_fn(graphdef):
    from nin_repro.train import logits_fn_for

    return make_eval_fn(logits_fn_for(graphdef))


def error(run: Loaded, x_NHWC: np.ndarray, y_N: np.ndarray) -> float:
    """Exact test error (every example, padded and masked) of preprocessed images."""
    data = EvalSet.build(x_NHWC, y_N, run.recipe.eval_batch_size)
    return evaluate(_eval_fn(run.graphdef), run.params, data).error


def resize(x_NHWC: np.ndarray, size: int) -> np.ndarray:
    """Preprocessed images resized (bilinear, antialiased when shrinking) to size x size."""
    n, _, _, c = x_NHWC.shape
    return np.asarray(jax.image.resize(jnp.asarray(x_NHWC), (n, size, size, c), "bilinear"))


def shift(x_NHWC: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images moved by (dy, dx) pixels, the uncovered border filled with 0 (the mean in
    preprocessed space)."""
    out = np.zeros_like(x_NHWC)
    h, w = x_NHWC.shape[1:3]
    src_y, dst_y = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    src_x, dst_x = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, dst_y, dst_x] = x_NHWC[:, src_y, src_x]
    return out


def size_sweep(run: Loaded, x_NHWC: np.ndarray, y_N: np.ndarray, sizes: tuple[int, ...]) -> dict[int, float | None]:
    """Test error at each input size (None where the network cannot run at that size)."""
    train_hw = run.recipe.model.input_hw
    out = {}
    for s in sizes:
        if not accepts_size(run, (s, s)):
            out[s] = None
        else:
            out[s] = error(run, x_NHWC if (s, s) == tuple(train_hw) else resize(x_NHWC, s), y_N)
    return out


TRANSLATION_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def translation_sweep(run: Loaded, x_NHWC: np.ndarray, y_N: np.ndarray, max_shift: int) -> dict[int, float]:
    """Test error under translations of 0..max_shift px, averaged over the four directions."""
    out = {0: error(run, x_NHWC, y_N)}
    for k in range(1, max_shift + 1):
        out[k] = float(np.mean([error(run, shift(x_NHWC, k * dy, k * dx), y_N) for dy, dx in TRANSLATION_DIRECTIONS]))
    return out


def train_test_gap(run: Loaded, x_train, y_train, x_test, y_test) -> tuple[float, float, float]:
    """(eval-mode training error, test error, test - train): how much the model overfits."""
    train, test = error(run, x_train, y_train), error(run, x_test, y_test)
    return train, test, test - train


def first_per_class(y_N: np.ndarray, per_class: int, num_classes: int) -> np.ndarray:
    """Indices of the first ``per_class`` examples of each class (a deterministic pick)."""
    idx = [np.flatnonzero(y_N == c)[:per_class] for c in range(num_classes)]
    return np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64)


def percentile_mask(maps_NHWK: np.ndarray, keep: float) -> np.ndarray:
    """Each image's maps with everything below its top ``keep`` fraction of activations (over
    all its maps together) set to 0, as the paper's Figure 4 shows the top 10 %."""
    n = len(maps_NHWK)
    thresh = np.quantile(maps_NHWK.reshape(n, -1), 1.0 - keep, axis=1).reshape(n, 1, 1, 1)
    return np.where(maps_NHWK >= thresh, maps_NHWK, 0.0)
