"""nin_repro.analysis: class maps, CAMs, pointing, sizes and translations on hand-built inputs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nin_repro import analysis
from nin_repro.models import NIN, BlockSpec, NINConfig, caffe_pool
from nin_repro.recipe import load_experiment

TINY = NINConfig(
    blocks=(BlockSpec(3, (8, 8, 8), init_std=None, pool="max", dropout=0.0), BlockSpec(3, (8, 8, 6), init_std=None, pool="none", dropout=0.0)),
    dropout_form="author",
    in_channels=1,
    input_hw=(12, 12),
    num_classes=4,
    head="gap_dense",
    final_relu=True,
)


def _loaded(config: NINConfig, seed: int = 0) -> analysis.Loaded:
    from nin_repro.preprocess import fit_preprocessor

    model = NIN(config, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
    pre = fit_preprocessor("scale01", np.zeros((2, *config.input_hw, 1), np.uint8))
    recipe = dataclasses.replace(load_experiment("cifar10").RECIPE, dataset="synthetic", preprocess="scale01", model=config, eval_batch_size=7)
    return analysis.Loaded(None, {"table": "t", "variant": "v", "seed": 0}, recipe, pre, graphdef, params)


def test_cam_equals_the_formula_and_its_mean_gives_the_logits():
    run = _loaded(TINY)
    x = np.random.default_rng(0).normal(size=(5, 12, 12, 1)).astype(np.float32)
    cams, logits = analysis.class_activation_maps(run, x, batch_size=2)
    model = run.model
    f = np.asarray(model.class_maps(jnp.asarray(x)))
    w = np.asarray(model.dense.kernel[...])
    expected = np.zeros(cams.shape, np.float32)
    for c in range(4):  # CAM_c(h, w) = sum_k w_kc f_k(h, w), written out
        for k in range(f.shape[-1]):
            expected[..., c] += w[k, c] * f[..., k]
    np.testing.assert_allclose(cams, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cams.mean(axis=(1, 2)) + np.asarray(model.dense.bias[...]), logits, rtol=1e-5, atol=1e-5)


def test_pure_gap_class_maps_are_the_last_maps():
    run = _loaded(dataclasses.replace(TINY, head="gap", blocks=TINY.blocks[:1] + (dataclasses.replace(TINY.blocks[1], widths=(8, 8, 4)),)))
    x = np.random.default_rng(1).normal(size=(3, 12, 12, 1)).astype(np.float32)
    maps, logits = analysis.class_activation_maps(run, x)
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), logits, rtol=1e-5, atol=1e-5)


def test_fc_head_has_no_class_maps():
    from nin_repro.errors import UsageError

    run = _loaded(dataclasses.replace(TINY, head="fc"))
    with pytest.raises(UsageError, match="GAP head"):
        analysis.class_activation_maps(run, np.zeros((1, 12, 12, 1), np.float32))


def test_map_geometry_puts_each_cell_on_its_receptive_field_centre():
    # Two 3x3/2 Caffe pools: cell j of the maps is centred on input pixel 4j + 3.
    cfg = dataclasses.replace(TINY, blocks=(TINY.blocks[0], TINY.blocks[0], dataclasses.replace(TINY.blocks[1], pool="none")))
    assert analysis.map_geometry(cfg) == (4, 3)
    # Check against the real pooling: a lone bright pixel at input row 11 lands in pooled cell 2.
    x = np.zeros((1, 20, 20, 1), np.float32)
    x[0, 11, 11] = 1.0
    pooled = np.asarray(caffe_pool(caffe_pool(jnp.asarray(x), "max"), "max"))[0, :, :, 0]
    assert pooled[2, 2] == 1.0 and pooled.sum() == 1.0
    up = analysis.upsample(_one_hot_map(5, 2, 2), (20, 20), (4, 3))
    assert np.unravel_index(up[0, :, :, 0].argmax(), (20, 20)) == (11, 11)


def _one_hot_map(size: int, i: int, j: int) -> np.ndarray:
    m = np.zeros((1, size, size, 1), np.float32)
    m[0, i, j] = 1.0
    return m


def test_pointing_score_of_a_map_peaking_on_the_box_is_one_and_off_it_zero():
    maps = np.zeros((3, 7, 7, 2), np.float32)
    maps[np.arange(3), [1, 3, 5], [1, 3, 5], 1] = 5.0  # class 1 peaks at cells (1,1), (3,3), (5,5)
    maps[:, 0, 6, 0] = 9.0  # class 0 peaks far away, top right
    geo = (4, 3)  # cell j -> pixel 4j + 3
    boxes = np.array([[4, 4, 10, 10], [12, 12, 18, 18], [20, 20, 26, 26]])
    assert analysis.pointing_hits(maps, np.array([1, 1, 1]), boxes, (28, 28), geo).all()
    assert not analysis.pointing_hits(maps, np.array([0, 0, 0]), boxes, (28, 28), geo).any()
    assert analysis.centre_hits(boxes, (28, 28)).tolist() == [False, True, False]


def test_paste_digits_boxes_hold_exactly_the_ink():
    digits = np.zeros((20, 8, 8, 1), np.uint8)
    digits[:, 2:5, 3:7] = 200
    canvases, boxes = analysis.paste_digits(digits, 20, seed=3)
    assert canvases.shape == (20, 20, 20, 1)
    for c, (y0, x0, y1, x1) in zip(canvases, boxes):
        assert (y1 - y0, x1 - x0) == (3, 4)
        assert c[y0:y1, x0:x1].min() == 200 and c.sum() == 200 * 12
    assert len({tuple(b) for b in boxes}) > 5  # positions really vary
    np.testing.assert_array_equal(analysis.paste_digits(digits, 20, seed=3)[1], boxes)  # deterministic for a seed


def test_shift_moves_pixels_and_fills_zero():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) + 1
    s = analysis.shift(x, 1, -2)[0, :, :, 0]
    assert s[1, 0] == x[0, 0, 2, 0] and s[0].sum() == 0 and s[:, 2:].sum() == 0
    np.testing.assert_array_equal(analysis.shift(x, 0, 0), x)


def _predict(run: analysis.Loaded, x: np.ndarray) -> np.ndarray:
    """The model's classes, computed directly (not through analysis.error)."""
    return np.asarray(run.model(jnp.asarray(x))).argmax(-1)


def _shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """out[y, x] = in[y - dy, x - dx], 0 where that falls outside: zero-pad, then crop."""
    h, w = x.shape[1:3]
    p, q = abs(dy), abs(dx)
    padded = np.pad(x, ((0, 0), (p, p), (q, q), (0, 0)))
    return padded[:, p - dy : p - dy + h, q - dx : q - dx + w]


def test_size_sweep_runs_gap_at_every_size_and_reports_none_for_fc():
    gap = _loaded(TINY)
    fc = _loaded(dataclasses.replace(TINY, head="fc"))
    x = np.random.default_rng(2).normal(size=(9, 12, 12, 1)).astype(np.float32)
    y = _predict(gap, x)  # labels = the GAP model's own answers at the training size: error 0 there
    g = analysis.size_sweep(gap, x, y, (8, 12, 16))
    f = analysis.size_sweep(fc, x, y, (8, 12, 16))
    assert g[12] == 0.0
    for s in (8, 16):
        resized = np.asarray(jax.image.resize(jnp.asarray(x), (9, s, s, 1), "bilinear"))
        assert g[s] == np.mean(_predict(gap, resized) != y)
    assert f[8] is None and f[16] is None and f[12] == np.mean(_predict(fc, x) != y)
    assert analysis.head_params(gap) == 6 * 4 + 4 and analysis.head_params(fc) == 6 * 6 * 6 * 4 + 4


def test_translation_sweep_averages_the_four_directions():
    run = _loaded(TINY)
    x = np.zeros((11, 12, 12, 1), np.float32)
    x[:, :2] = 3 * np.random.default_rng(3).normal(size=(11, 2, 12, 1))  # ink in the top two rows only: shifts change the answers
    y = _predict(run, x)
    t = analysis.translation_sweep(run, x, y, 2)
    assert sorted(t) == [0, 1, 2] and t[0] == 0.0
    for k in (1, 2):
        by_hand = np.mean([np.mean(_predict(run, _shifted(x, k * dy, k * dx)) != y) for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))])
        assert t[k] == pytest.approx(by_hand, abs=1e-12)
    assert t[1] > 0.0 and t[2] > 0.0  # the shifts do change answers, so the comparison above means something


def test_percentile_mask_keeps_the_top_tenth_of_each_image():
    maps = np.random.default_rng(4).random((2, 10, 10, 10)).astype(np.float32)
    kept = analysis.percentile_mask(maps, 0.10)
    frac = (kept > 0).reshape(2, -1).mean(1)
    np.testing.assert_allclose(frac, 0.10, atol=0.002)
    assert np.all(kept[kept > 0] == maps[kept > 0])
    # The right pixels: each image's 100 largest of its 1000 values (over all its maps together).
    for i in range(2):
        top = np.sort(maps[i].ravel())[-100:]
        np.testing.assert_array_equal(np.sort(kept[i][kept[i] > 0]), top)


def test_percentile_mask_on_a_hand_built_image():
    """20 values 1..20 in two maps of one image: the top 10 % are 19 and 20, wherever they are;
    the other image's own threshold does not depend on the first's."""
    maps = np.zeros((2, 2, 5, 2), np.float32)
    maps[0] = np.arange(1, 21, dtype=np.float32).reshape(2, 5, 2)[::-1]
    maps[1] = 100.0 + np.arange(20, dtype=np.float32).reshape(2, 5, 2)
    kept = analysis.percentile_mask(maps, 0.10)
    assert sorted(kept[0][kept[0] > 0].tolist()) == [19.0, 20.0]
    assert np.argwhere(kept[0] > 0).tolist() == [[0, 4, 0], [0, 4, 1]]  # where 19 and 20 are
    assert sorted(kept[1][kept[1] > 0].tolist()) == [118.0, 119.0]


def test_strongest_map_agreement_counts_peak_vs_mean():
    maps = np.zeros((2, 2, 2, 2), np.float32)
    maps[0, 0, 0, 0] = 10.0  # class 0: one high peak, mean 2.5
    maps[0, :, :, 1] = 3.0  # class 1: mean 3 -> predicted
    maps[1, :, :, 1] = 1.0
    logits = maps.mean(axis=(1, 2))
    assert analysis.strongest_map_agreement(maps, logits) == 0.5


def test_aux_head_is_trained_but_not_used_at_inference():
    cfg = dataclasses.replace(TINY, head="gap", aux_after=0, blocks=TINY.blocks[:1] + (dataclasses.replace(TINY.blocks[1], widths=(8, 8, 4)),))
    model = NIN(cfg, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 12, 12, 1))
    logits, aux = model.with_aux(x)
    np.testing.assert_allclose(logits, model(x), rtol=1e-6)
    assert aux.shape == (2, 4)
    run = _loaded(cfg)
    plain = _loaded(dataclasses.replace(cfg, aux_after=None))
    assert analysis.inference_params(run) == analysis.inference_params(plain) < sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    with pytest.raises(ValueError, match="aux_after"):
        dataclasses.replace(cfg, aux_after=1)
