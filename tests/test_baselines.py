"""The baseline rows' layers and schedules (nin_repro/baselines.py) against hand-worked numbers:
pylearn2 maxout (conv, dense, max-norm, dropout, MomentumAdjustor, LinearDecayOverEpoch,
ExponentialDecay) and stochastic pooling with LRN; parameter counts worked out from the yamls."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nin_repro.baselines import (
    MaxoutConfig,
    MaxoutConv,
    MaxoutConvSpec,
    MaxoutDense,
    MaxoutDenseSpec,
    MaxoutNet,
    StochasticPoolNet,
    conv_padded,
    local_response_norm,
    max_norm_projection,
    momentum_adjustor,
    project_max_norm,
    pylearn2_dropout,
    sample_cell,
    stochastic_pool,
)
from nin_repro.models import config_from_dict, count_params
from nin_repro.recipe import load_experiment
from nin_repro.train import PreparedData, load_params, lr_schedule, momentum_schedule, train_and_evaluate_seeds

pytestmark = pytest.mark.usefixtures("tiny_runs_compile_at_o0")  # tiny runs: conftest.py

# --------------------------------------------------------------------------- maxout layers


def _conv_layer(kernel_4, bias_4, pool_shape=2, pool_stride=2):
    spec = MaxoutConvSpec(2, 2, kernel=1, pad=0, pool_shape=pool_shape, pool_stride=pool_stride, irange=0.1, max_kernel_norm=None, tied_b=True)
    layer = MaxoutConv(1, spec, 3, jnp.float32, rngs=nnx.Rngs(0))
    layer.kernel[...] = jnp.asarray(kernel_4, jnp.float32).reshape(1, 1, 1, 4)
    layer.bias[...] = jnp.asarray(bias_4, jnp.float32)
    return layer


X33 = jnp.asarray([[1, -2, 3], [-4, 5, -6], [7, -8, 9]], jnp.float32).reshape(1, 3, 3, 1)


def test_maxout_conv_max_over_consecutive_pieces_then_clipped_pool():
    # Maps 0, 1 are unit 0's pieces (x and -x: |x|); maps 2, 3 unit 1's (2x and the constant 3).
    layer = _conv_layer([1, -1, 2, 0], [0, 0, 0, 3])
    y = np.asarray(layer(X33))[0]
    # |x| = [[1 2 3] [4 5 6] [7 8 9]]; 2x2/2 pooling of 3x3 gives ceil(1/2) + 1 = 2 windows a side,
    # the last one clipped to the border row / column: [[max(1,2,4,5), max(3,6)], [max(7,8), 9]].
    np.testing.assert_array_equal(y[..., 0], [[5, 6], [8, 9]])
    # max(2x, 3) = [[3 3 6] [3 10 3] [14 3 18]] -> [[10, 6], [14, 18]].
    np.testing.assert_array_equal(y[..., 1], [[10, 6], [14, 18]])


def test_maxout_conv_tied_pieces_give_the_shared_value():
    layer = _conv_layer([1, 1, -1, -1], [0, 0, 0.5, 0.5])  # both pieces equal in each unit
    y = np.asarray(layer(X33))[0]
    np.testing.assert_array_equal(y[..., 0], [[5, 3], [7, 9]])  # pooled x: max(1, -2, -4, 5), max(3, -6), max(7, -8), 9
    np.testing.assert_array_equal(y[..., 1], [[4.5, 6.5], [8.5, -8.5]])  # pooled 0.5 - x


def test_dense_maxout_by_hand_with_a_tie():
    layer = MaxoutDense(2, MaxoutDenseSpec(2, 3, irange=0.1, max_col_norm=None), rngs=nnx.Rngs(0))
    # unit 0: pieces x1, x2, x1 + x2 - 4; unit 1: pieces -x1, -x2, 0 * x + 1
    layer.kernel[...] = jnp.asarray([[1, 0, 1, -1, 0, 0], [0, 1, 1, 0, -1, 0]], jnp.float32)
    layer.bias[...] = jnp.asarray([0, 0, -4, 0, 0, 1], jnp.float32)
    y = np.asarray(layer(jnp.asarray([[2.0, 3.0], [3.0, 3.0], [-2.0, 0.5]])))
    # [2, 3]: max(2, 3, 1) = 3, max(-2, -3, 1) = 1; [3, 3]: a tie at 3 (and 2), max(-3, -3, 1) = 1;
    # [-2, .5]: max(-2, .5, -5.5) = .5, max(2, -.5, 1) = 2.
    np.testing.assert_array_equal(y, [[3, 1], [3, 1], [0.5, 2]])


@pytest.mark.parametrize("kernel, pad", [(5, 3), (8, 4), (8, 3), (5, 0)])
def test_conv_padded_equals_the_conv_with_its_own_padding(kernel, pad):
    # The yamls' paddings (5x5 pad 3, 8x8 pad 4 / 3), which exceed (k - 1) // 2 and are split on a
    # CPU, and one that is not; values and both gradients against one conv carrying all the padding.
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 4))

    def whole(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w)))

    np.testing.assert_allclose(conv_padded(x, w, pad), whole(x, w), rtol=1e-5, atol=1e-4)
    for got, want in zip(jax.grad(loss(lambda x, w: conv_padded(x, w, pad)), (0, 1))(x, w), jax.grad(loss(whole), (0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # On this CPU the excess really is a separate pad (the point of the function).
    split = pad > (kernel - 1) // 2
    assert ("pad[" in str(jax.make_jaxpr(lambda x, w: conv_padded(x, w, pad))(x, w))) == split


def test_maxout_net_pool_gradients_agree_and_a_bad_choice_is_refused():
    recipe = load_experiment("svhn").TABLE.variant("maxout_dropout").recipe
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    grads = {}
    for grad in ("xla", "mask"):
        model = MaxoutNet(dataclasses.replace(recipe.model.scaled(1 / 16), pool_grad=grad), rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(model)
        grads[grad] = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(x) ** 2))(params)
    for a, b in zip(jax.tree.leaves(grads["xla"]), jax.tree.leaves(grads["mask"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="pool_grad"):
        dataclasses.replace(recipe.model, pool_grad="scatter")


# --------------------------------------------------------------------------- max-norm


def test_max_norm_rescales_only_the_columns_over_the_limit():
    w = jnp.asarray([[3.0, 0.3], [4.0, 0.4]])  # column norms 5 and 0.5
    out = np.asarray(max_norm_projection(w, 2.5))
    np.testing.assert_allclose(out, [[1.5, 0.3], [2.0, 0.4]], rtol=1e-6)
    # A conv kernel: one norm per output map over k x k x C_in.
    k = jnp.zeros((2, 2, 1, 2)).at[:, :, 0, 0].set(1.0).at[0, 0, 0, 1].set(0.5)  # norms 2 and 0.5
    out_k = np.asarray(max_norm_projection(k, 1.0))
    np.testing.assert_allclose(out_k[..., 0], 0.5 * np.ones((2, 2, 1)), rtol=1e-6)
    np.testing.assert_array_equal(out_k[..., 1], np.asarray(k)[..., 1])


def test_projection_transform_applies_to_the_updated_weights():
    params = {"w": jnp.asarray([[1.0], [0.0]]), "b": jnp.asarray([10.0])}
    tx = project_max_norm({"w": 1.0, "b": None})
    updates, _ = tx.update({"w": jnp.asarray([[2.0], [4.0]]), "b": jnp.asarray([5.0])}, tx.init(params), params)
    new_w = np.asarray(params["w"] + updates["w"])[:, 0]  # 1 + 2, 0 + 4 = (3, 4): norm 5 -> 1
    np.testing.assert_allclose(new_w, [0.6, 0.8], rtol=1e-6)
    assert float(updates["b"][0]) == 5.0


# --------------------------------------------------------------------------- dropout


def test_pylearn2_dropout_scales():
    x = jnp.ones((100_000,))
    k = jax.random.key(0)
    image = np.asarray(pylearn2_dropout(x, 0.8, 1.0, k))  # the input layer: survivors unscaled
    assert set(np.unique(image)) == {0.0, 1.0}
    assert abs(image.mean() - 0.8) < 5 * math.sqrt(0.8 * 0.2 / x.size)
    hidden = np.asarray(pylearn2_dropout(x, 0.5, 2.0, k))  # later layers: survivors x 2
    assert set(np.unique(hidden)) == {0.0, 2.0}
    assert abs((hidden > 0).mean() - 0.5) < 5 * math.sqrt(0.25 / x.size)
    np.testing.assert_array_equal(pylearn2_dropout(x, 0.5, 2.0, None), x)  # evaluation: no mask


# --------------------------------------------------------------------------- schedules


def test_momentum_adjustor_at_chosen_epochs():
    # cifar10_no_aug.yaml: init .5, final .6, start 1, saturate 250; epoch e trains with count e + 1.
    m = load_experiment("baselines_cifar10").MAXOUT_RECIPE
    spe = 10
    mom = momentum_schedule(m, spe)
    expected = {0: 0.5, 125: 0.5 + 0.1 * 125 / 249, 249: 0.6, 700: 0.6}  # alpha = (count - 1) / 249
    for epoch, value in expected.items():
        assert float(mom(epoch * spe + 3)) == pytest.approx(value, rel=1e-6)
    assert momentum_adjustor(1, 0.5, 0.7, 1, 250) == 0.5 and momentum_adjustor(250, 0.5, 0.7, 1, 250) == pytest.approx(0.7)


def test_linear_decay_over_epoch_at_chosen_epochs():
    # LinearDecayOverEpoch start 1, saturate 500, decay .01 on LR .17: step = .17 * .99 / 500 per count.
    m = load_experiment("baselines_cifar10").MAXOUT_RECIPE
    spe = 10
    expected = {0: 0.17 - 0.0003366, 249: 0.17 - 250 * 0.0003366, 498: 0.17 - 499 * 0.0003366, 499: 0.0017, 784: 0.0017}
    device = lr_schedule(m, spe)
    for epoch, lr in expected.items():
        step = epoch * spe + 7
        assert m.base_lr * m.lr_factor(step, spe) == pytest.approx(lr, rel=1e-6)
        assert m.base_lr * float(device(step)[0]) == pytest.approx(lr, rel=1e-5)


def test_exponential_decay_by_hand():
    # mnist.yaml: LR .05 / 1.00004 ** t after t minibatches, never below 1e-6.
    m = load_experiment("baselines_mnist").MAXOUT_RECIPE
    device = lr_schedule(m, 390)
    for step, lr in {0: 0.05, 1: 0.05 / 1.00004, 1000: 0.0480395, 300_000: 1e-6}.items():
        assert m.base_lr * m.lr_factor(step, 390) == pytest.approx(lr, rel=1e-5)
        assert m.base_lr * float(device(step)[0]) == pytest.approx(lr, rel=1e-4)


def test_svhn2_second_phase_lr_and_momentum_at_chosen_steps():
    # svhn.yaml: LR .2, LinearDecayOverEpoch(1, 250, .001), momentum .5 -> .6 (start 1, saturate 250),
    # 142 epochs; then svhn2.yaml: LR .0086, momentum .9, a fresh velocity, 9 epochs. 10 steps per epoch.
    m = load_experiment("baselines_svhn").MAXOUT_RECIPE
    assert m.pylearn2_phase2 == (9, 0.0086, 0.9) and m.max_epochs == 142
    spe = 10
    assert m.total_steps(spe) == 1510
    lr_dev, mom_dev = lr_schedule(m, spe), momentum_schedule(m, spe)
    # step: (LR, momentum). Epoch 141 trains with count 142: LR .2 - .2 * .999 * 142 / 250 = .0865136,
    # momentum .5 + .1 * 141 / 249 = .5566265; step 1420 starts svhn2 with momentum 0 (v = -lr g).
    expected = {1419: (0.0865136, 0.5566265), 1420: (0.0086, 0.0), 1421: (0.0086, 0.9), 1509: (0.0086, 0.9)}
    for step, (lr, mom) in expected.items():
        assert m.base_lr * m.lr_factor(step, spe) == pytest.approx(lr, rel=1e-5)
        assert m.base_lr * float(lr_dev(step)[0]) == pytest.approx(lr, rel=1e-5)
        assert m.base_lr * float(lr_dev(step)[1]) == pytest.approx(lr, rel=1e-5)
        assert float(mom_dev(step)) == pytest.approx(mom, abs=1e-6)
    # --epochs 15.1 shrinks both phases by 0.1: step 141 is schedule epoch 141, the second phase starts at step 142.
    short = dataclasses.replace(m, epochs=15.1)
    assert short.total_steps(spe) == 151
    assert [float(momentum_schedule(short, spe)(s)) for s in (141, 142, 143)] == pytest.approx([0.5 + 0.1 * 141 / 249, 0.0, 0.9])
    assert short.base_lr * short.lr_factor(142, spe) == pytest.approx(0.0086)


def test_a_zero_momentum_step_restarts_the_velocity_as_a_fresh_momentum_rule_does():
    # pylearn2 Momentum: vel <- m vel - lr g, param += vel; a new rule's vel starts at 0.
    from nin_repro.baselines import pylearn2_optimizer

    config = MaxoutConfig(maxout_convs=(), maxout_dense=(), softmax_irange=0.1, softmax_max_col_norm=None, in_channels=1, input_hw=(1, 1), num_classes=1)
    params = {"softmax": {"kernel": jnp.zeros((1, 1)), "bias": jnp.zeros((1,))}}
    tx = pylearn2_optimizer(config, params)
    state = tx.init(params)
    g = {"softmax": {"kernel": jnp.ones((1, 1)), "bias": jnp.ones((1,))}}
    history = []
    for lr, m in ((0.1, 0.5), (0.1, 0.5), (0.01, 0.0), (0.01, 0.9)):
        state.hyperparams.update(learning_rate=lr, bias_learning_rate=lr, momentum=m)
        updates, state = tx.update(g, state, params)
        history.append(float(updates["softmax"]["kernel"][0, 0]))
    # -.1; .5 * -.1 - .1 = -.15; 0 * -.15 - .01 = -.01 (fresh); .9 * -.01 - .01 = -.019
    assert history == pytest.approx([-0.1, -0.15, -0.01, -0.019])


def test_phase2_must_be_epochs_lr_momentum():
    from nin_repro.errors import UsageError

    m = load_experiment("baselines_svhn").MAXOUT_RECIPE
    for bad in ((9, 0.0086), (0, 0.0086, 0.9), (9, 0.0086, 1.0), (9, -1, 0.9)):
        with pytest.raises(UsageError, match="pylearn2_phase2"):
            dataclasses.replace(m, pylearn2_phase2=bad)


# --------------------------------------------------------------------------- stochastic pooling and LRN

WINDOW = jnp.asarray([[1, 0, 2], [0, 3, 0], [0, 0, 4]], jnp.float32).reshape(1, 3, 3, 1)  # p = .1, .2, .3, .4


def test_stochastic_pool_frequencies_within_a_binomial_bound():
    n = 100_000
    out = np.asarray(stochastic_pool(jnp.broadcast_to(WINDOW, (n, 3, 3, 1)), jax.random.key(0)))
    assert out.shape == (n, 1, 1, 1)
    values, counts = np.unique(out, return_counts=True)
    assert list(values) == [1, 2, 3, 4]  # the zeros are never picked
    for v, c in zip(values, counts):
        p = v / 10
        assert abs(c / n - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_stochastic_pool_test_time_average():
    # sum(a_i * a_i / 10) = (1 + 4 + 9 + 16) / 10 = 3
    assert float(stochastic_pool(WINDOW, None)[0, 0, 0, 0]) == pytest.approx(3.0)
    # 3x3/2 windows of a 4x4 map: the second window is clipped (columns 2-3 only) -> a: 5, 0 -> 5
    x = jnp.zeros((1, 4, 4, 1)).at[0, 0, 3, 0].set(5.0).at[0, 1, 1, 0].set(2.0).at[0, 1, 0, 0].set(2.0)
    np.testing.assert_allclose(np.asarray(stochastic_pool(x, None))[0, :, :, 0], [[(4 + 4) / 4 * 1.0, 5.0], [0.0, 0.0]])


def test_an_all_zero_window_gives_zero_and_no_nan():
    x = jnp.zeros((2, 3, 3, 1))
    for key in (jax.random.key(0), None):
        y, grad = jax.value_and_grad(lambda a, key=key: stochastic_pool(a, key).sum())(x)
        assert float(y) == 0.0 and np.isfinite(np.asarray(grad)).all()


def test_sampling_never_picks_a_zero_cell_at_either_end_of_u():
    cells = jnp.asarray([[0.0, 3.0, 1.0, 0.0], [1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # u = 0: the first positive cell (running sums 0, 3, 4, 4 > 0 first at index 1; 1 at index 0).
    np.testing.assert_array_equal(sample_cell(cells, jnp.zeros((3, 1)))[:, 0], [1, 0, 3])
    # u = 1 (what u * total rounding up to the total looks like): the last positive cell, not the
    # trailing zero; the all-zero window keeps its last cell (value 0).
    np.testing.assert_array_equal(sample_cell(cells, jnp.ones((3, 1)))[:, 0], [2, 1, 3])
    # u = 0.5 on [1, 2, 0, 0]: threshold 1.5, running 1, 3 -> index 1.
    assert int(sample_cell(cells[1:2], jnp.full((1, 1), 0.5))[0, 0]) == 1


def test_training_gradient_goes_to_the_picked_cell_only():
    x = jnp.broadcast_to(WINDOW, (64, 3, 3, 1))
    y, grad = jax.value_and_grad(lambda a: stochastic_pool(a, jax.random.key(3)).sum())(x)
    grad = np.asarray(grad).reshape(64, 9)
    picked = np.asarray(WINDOW).reshape(9)[grad.argmax(axis=1)]
    np.testing.assert_array_equal(grad.sum(axis=1), np.ones(64))  # one cell per window gets d/dy = 1
    assert (grad >= 0).all() and ((grad == 0) | (grad == 1)).all()
    np.testing.assert_array_equal(picked, np.asarray(stochastic_pool(x, jax.random.key(3))).reshape(64))
    assert len(set(picked.tolist())) > 1  # different windows drew different cells


def _pylearn2_weighted_pool(a_HW: np.ndarray, p: int = 3, s: int = 2) -> np.ndarray:
    """``weighted_max_pool_bc01`` of pylearn2's expr/stochastic_pool.py, in NumPy loops: last pool
    start ceil((n - p) / s) * s, the image zero-padded up to it + p, each window sum(a * a / norm),
    norm = the window's sum (1 where it is 0)."""
    last_r = math.ceil((a_HW.shape[0] - p) / s) * s
    last_c = math.ceil((a_HW.shape[1] - p) / s) * s
    padded = np.zeros((last_r + p, last_c + p))
    padded[: a_HW.shape[0], : a_HW.shape[1]] = a_HW
    out = np.zeros((last_r // s + 1, last_c // s + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            w = padded[i * s : i * s + p, j * s : j * s + p]
            norm = w.sum() if w.sum() != 0 else 1.0
            out[i, j] = (w * w / norm).sum()
    return out


def test_test_time_average_and_geometry_equal_pylearn2s_weighted_pool():
    rng = np.random.default_rng(0)
    for n in (7, 8, 16):  # 8 and 16: the last window hangs over the edge; 7: it fits
        a = np.maximum(rng.normal(size=(n, n)), 0).astype(np.float32)
        a[:3, :3] = 0  # an all-zero window
        ours = np.asarray(stochastic_pool(jnp.asarray(a).reshape(1, n, n, 1), None))[0, :, :, 0]
        np.testing.assert_allclose(ours, _pylearn2_weighted_pool(a), rtol=1e-5, atol=1e-7)
        assert ours[0, 0] == 0.0


def test_lrn_by_hand():
    # size 3, alpha 3 (alpha / size = 1), beta .5, k 1 across maps 1, 2, 3:
    # 1 / sqrt(1 + 1 + 4), 2 / sqrt(1 + 1 + 4 + 9), 3 / sqrt(1 + 4 + 9)
    x = jnp.asarray([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)
    y = np.asarray(local_response_norm(x, 3, 3.0, 0.5, 1.0))[0, 0, 0]
    np.testing.assert_allclose(y, [1 / math.sqrt(6), 2 / math.sqrt(15), 3 / math.sqrt(14)], rtol=1e-6)


def test_lrn_with_the_recipes_constants_by_hand():
    # The recipe's constants ([ours]: size 3, alpha 0.001, beta 0.75, k 1), on maps 10, 20, 30, 40 at
    # one position: map c is divided by (1 + 0.001 / 3 * (sum of squares of maps c-1, c, c+1)) ** 0.75.
    c = load_experiment("baselines_mnist").STOCHASTIC
    assert (c.lrn_size, c.lrn_alpha, c.lrn_beta, c.lrn_k) == (3, 0.001, 0.75, 1.0)
    x = jnp.asarray([10.0, 20.0, 30.0, 40.0]).reshape(1, 1, 1, 4)
    sums = [100 + 400, 100 + 400 + 900, 400 + 900 + 1600, 900 + 1600]  # 500, 1400, 2900, 2500
    want = [a / (1 + 0.001 / 3 * s) ** 0.75 for a, s in zip((10, 20, 30, 40), sums)]
    y = np.asarray(local_response_norm(x, c.lrn_size, c.lrn_alpha, c.lrn_beta, c.lrn_k))[0, 0, 0]
    np.testing.assert_allclose(y, want, rtol=1e-6)
    assert y[3] == pytest.approx(40 / (1 + 2500 / 3000) ** 0.75, rel=1e-6)  # (11 / 6) ** 0.75 = 1.575...


# --------------------------------------------------------------------------- the networks of the yamls


def test_parameter_counts_from_the_yamls():
    # mnist.yaml (untied biases: one per detector map and position):
    # h0 8*8*1*96 + 96*21*21, h1 8*8*48*96 + 96*9*9, h2 5*5*48*96 + 96*6*6, y 24*3*3*10 + 10
    mnist = 6144 + 42336 + 294912 + 7776 + 115200 + 3456 + 2170
    # cifar10_no_aug.yaml (tied biases): h0 8*8*3*192 + 192, h1 8*8*96*384 + 384, h2 5*5*192*384 + 384,
    # h3 (192*5*5 + 1) * 500*5, y (500 + 1) * 10
    cifar = 36864 + 192 + 2359296 + 384 + 1843200 + 384 + 4801 * 2500 + 5010
    # svhn.yaml (tied): h0 5*5*3*128 + 128, h1 5*5*64*256 + 256, h2 5*5*128*256 + 256, h3 (128*6*6 + 1) * 400*5, y 401 * 10
    svhn = 9600 + 128 + 409600 + 256 + 819200 + 256 + 4609 * 2000 + 4010
    # galatea maxout/expdir/c100_david_full_no_randomize.yaml (tied biases), the CIFAR-10 layers with
    # Softmax n_classes 100: h0 8*8*3*(96*2) + 96*2, h1 8*8*96*(192*2) + 192*2, h2 5*5*192*(192*2) + 192*2,
    # h2's 192 maps of 5x5 (32 +8 -8 +1 = 33 -> pool 4/2: 16; 16 +6 -8 +1 = 15 -> 7; 7 +6 -5 +1 = 9 -> pool 2/2: 5)
    # into h3 (192*5*5 + 1) * (500*5), y (500 + 1) * 100
    cifar100 = (8 * 8 * 3 * 192 + 192) + (8 * 8 * 96 * 384 + 384) + (5 * 5 * 192 * 384 + 384) + (192 * 5 * 5 + 1) * 500 * 5 + 501 * 100
    tables = {"baselines_mnist": "mnist", "baselines_cifar10": "cifar10", "baselines_svhn": "svhn", "baselines_cifar100": "cifar100"}
    for name, count in (("baselines_mnist", mnist), ("baselines_cifar10", cifar), ("baselines_svhn", svhn), ("baselines_cifar100", cifar100)):
        config = load_experiment(name).MAXOUT_RECIPE.model
        assert config.param_count() == count
        assert count_params(nnx.eval_shape(lambda config=config: MaxoutNet(config, rngs=nnx.Rngs(0)))) == count  # shapes only
        assert f"maxout {count:,} " in " ".join(load_experiment(tables[name]).TABLE.notes)  # printed under the NIN table
    # The feature-map sizes match the CIFAR-10 yaml's partial_sum (33 for h0, 15 for h1).
    assert [det for det, _ in load_experiment("baselines_cifar10").MAXOUT_RECIPE.model.conv_shapes()][:2] == [33, 15]


def test_stochastic_pooling_parameter_counts_by_hand():
    # Three 5x5 convs of 64 maps (+ bias), "same" padding; 3x3/2 pooling: 28 -> 14 -> 7 -> 3 and
    # 32 -> 16 -> 8 -> 4; softmax on the last pooled maps (+ bias).
    mnist = (25 * 1 + 1) * 64 + 2 * (25 * 64 + 1) * 64 + (3 * 3 * 64 + 1) * 10
    rgb32 = (25 * 3 + 1) * 64 + 2 * (25 * 64 + 1) * 64 + (4 * 4 * 64 + 1) * 10
    for name, count in (("mnist", mnist), ("cifar10", rgb32), ("svhn", rgb32)):  # the NIN tables that hold the rows
        [config] = [v.recipe.model for v in load_experiment(name).TABLE.variants if v.recipe.model.__class__.__name__ == "StochasticPoolConfig"]
        assert config.param_count() == count
        assert count_params(nnx.eval_shape(lambda config=config: StochasticPoolNet(config, rngs=nnx.Rngs(0)))) == count
        assert f"stochastic pooling {count:,}." in " ".join(load_experiment(name).TABLE.notes)


def test_configs_read_back_from_json():
    for name in ("baselines_mnist", "baselines_cifar10", "baselines_svhn", "baselines_cifar100"):
        for v in load_experiment(name).VARIANTS:
            assert config_from_dict(json.loads(json.dumps(dataclasses.asdict(v.recipe.model)))) == v.recipe.model


# --------------------------------------------------------------------------- in the harness


# A maxout net on 8x8x1 images, 4 classes: a conv layer (2 pieces, pool 2/2), a dense layer, the
# softmax, each with a max norm; the conv layer at half the LR, its input dropped as the yamls' h0.
TINY_MAXOUT = MaxoutConfig(
    maxout_convs=(MaxoutConvSpec(4, 2, 3, pad=1, pool_shape=2, pool_stride=2, irange=0.3, max_kernel_norm=0.5, tied_b=True, W_lr_scale=0.5, include_prob=0.8, input_scale=1.0),),
    maxout_dense=(MaxoutDenseSpec(6, 2, irange=0.3, max_col_norm=0.7),),
    softmax_irange=0.3,
    softmax_max_col_norm=0.9,
    in_channels=1,
    input_hw=(8, 8),
    num_classes=4,
)


def test_tiny_maxout_recipes_train_with_max_norm_held(tmp_path):
    """Two seeds at once (the vmapped step, momentum and LR set inside it, a second phase after
    epoch 4), through the harness."""
    tiny = TINY_MAXOUT
    base = load_experiment("baselines_mnist").MAXOUT_RECIPE
    recipe = dataclasses.replace(base, dataset="synthetic", model=tiny, batch_size=8, max_epochs=4, seeds=(0, 1), eval_batch_size=7, base_lr=0.15, pylearn2_phase2=(2, 0.05, 0.9))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 85).astype(np.int32)
    x = (rng.normal(size=(85, 8, 8, 1)) + 1.5 * y[:, None, None, None]).astype(np.float32)
    dirs = [tmp_path / "s0", tmp_path / "s1"]
    results = train_and_evaluate_seeds(recipe, PreparedData(x[:64], y[:64], x[64:], y[64:], 4, "test"), dirs, [0, 1])
    assert [r.steps for r in results] == [6 * 8, 6 * 8]
    assert all(math.isfinite(r.test_loss) for r in results)
    for d in dirs:
        _, params = load_params(d / "params", recipe)
        for path, limit in ((("maxout_convs", 0), 0.5), (("maxout_dense", 0), 0.7), (("softmax",), 0.9)):
            node = params
            for k in path:
                node = node[k]
            w = np.asarray(node["kernel"][...])
            norms = np.sqrt((w**2).reshape(-1, w.shape[-1]).sum(axis=0))
            assert norms.max() <= limit * (1 + 1e-5)
            assert norms.max() >= limit * 0.99  # LR 0.15 pushes the weights to the limit: the projection acted


def test_tiny_stochastic_pooling_recipe_trains_in_the_harness(tmp_path):
    """The stochastic-pooling recipe through train_and_evaluate_seeds (two seeds, the compiled
    program built from compiled_recipe, which clears init_std), on a tiny net: finite, all steps."""
    base = load_experiment("baselines_mnist").STOCHASTIC_RECIPE
    tiny = dataclasses.replace(base.model, sp_features=(4, 4), input_hw=(8, 8), num_classes=4)
    recipe = dataclasses.replace(base, dataset="synthetic", model=tiny, batch_size=8, max_epochs=3, seeds=(0, 1), eval_batch_size=7, lr_decay=("linear_epoch", 1, 3, 0.01))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 85).astype(np.int32)
    x = np.maximum(rng.normal(size=(85, 8, 8, 1)) + 0.5 * y[:, None, None, None], 0).astype(np.float32)
    results = train_and_evaluate_seeds(recipe, PreparedData(x[:64], y[:64], x[64:], y[64:], 4, "test"), [tmp_path / "s0", tmp_path / "s1"], [0, 1])
    assert [r.steps for r in results] == [3 * 8, 3 * 8]
    assert all(math.isfinite(r.test_loss) for r in results)


def test_maxout_net_drops_each_layers_input_as_the_yaml_says(monkeypatch):
    """(include prob, scale) of every layer's input: h0 (0.8, 1), every later layer the Dropout defaults (0.5, 2)."""
    import nin_repro.baselines as baselines

    seen = []
    real = baselines.pylearn2_dropout

    def recording(x, p, scale, key):
        seen.append((p, scale, key is not None))
        return real(x, p, scale, key)

    monkeypatch.setattr(baselines, "pylearn2_dropout", recording)
    config = load_experiment("baselines_mnist").MAXOUT_RECIPE.model.scaled(1 / 8)
    net = MaxoutNet(config, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
    trained = net(x, train=True, rngs=nnx.Rngs(dropout=0))
    assert seen == [(0.8, 1.0, True)] + [(0.5, 2.0, True)] * 3  # h0, h1, h2, y
    seen.clear()
    evaluated = net(x)
    assert all(not has_key for *_, has_key in seen)  # evaluation: no mask
    np.testing.assert_array_equal(evaluated, net(x, train=False, rngs=nnx.Rngs(dropout=5)))
    assert not np.allclose(trained, evaluated)
    # The CIFAR-10 and SVHN nets hold the same values (h0, h1, h2, h3, y): the same code path reads them.
    for name in ("baselines_cifar10", "baselines_svhn"):
        c = load_experiment(name).MAXOUT_RECIPE.model
        probs = [(s.include_prob, s.input_scale) for s in (*c.maxout_convs, *c.maxout_dense)] + [(c.softmax_include_prob, c.softmax_input_scale)]
        assert probs == [(0.8, 1.0)] + [(0.5, 2.0)] * 4
    # c100_david_full_no_randomize.yaml: `cost: Dropout {}`, no per-layer values: the image too (0.5, 2).
    c = load_experiment("baselines_cifar100").MAXOUT_RECIPE.model
    assert [(s.include_prob, s.input_scale) for s in (*c.maxout_convs, *c.maxout_dense)] + [(c.softmax_include_prob, c.softmax_input_scale)] == [(0.5, 2.0)] * 5


def test_the_real_digit_runs_change_only_data_length_seeds_and_the_second_phase():
    from nin_repro.baselines_study import NETS, real_digit_recipe

    for key, experiment, variant, dataset in NETS:
        table_recipe = load_experiment(experiment).TABLE.variant(variant).recipe
        recipe = real_digit_recipe(experiment, variant, dataset, 4, (0, 1, 2))
        assert recipe.total_steps(31) == 4 * 31, key  # 4 epochs, the svhn2.yaml phase left out
        changed = {f.name for f in dataclasses.fields(recipe) if getattr(recipe, f.name) != getattr(table_recipe, f.name)}
        # maxout: pylearn2's schedules unscaled (max_epochs); stochastic pooling: its schedule scaled (epochs)
        length = {"max_epochs", "pylearn2_phase2"} if variant == "maxout_dropout" else {"epochs"}
        assert changed <= {"dataset", "seeds"} | length, (key, changed)
        assert recipe.dataset == ("digits5k" if key.endswith("mnist") else "digits5k_rgb32")
    assert {variant for _, _, variant, _ in NETS} == {"maxout_dropout", "stochastic_pooling"}


def test_the_real_digit_study_takes_a_seed_count_or_a_seed_list():
    from nin_repro.baselines_study import parse_seeds

    assert parse_seeds("3") == (0, 1, 2)
    assert parse_seeds("1,2") == (1, 2) and parse_seeds("2, 1,2") == (2, 1)
    assert parse_seeds("4,") is None and parse_seeds("0") is None and parse_seeds("x") is None
