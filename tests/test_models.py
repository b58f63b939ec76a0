import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nin_repro.experiments.cifar10 import nin as nin_cifar10

from nin_repro.models import NIN, BlockSpec, NINConfig, caffe_pool, count_params, final_hw, resolve_pool_grad


def caffe_pool_reference(x_HW: np.ndarray, kind: str, k: int = 3, s: int = 2) -> np.ndarray:
    """Caffe's PoolingLayer with pad 0, written from its C++ loops: ceil output size, windows
    start at h*s and are clipped at the border; AVE divides by the clipped window size."""
    H, W = x_HW.shape
    oh, ow = math.ceil((H - k) / s) + 1, math.ceil((W - k) / s) + 1
    out = np.empty((oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s, j * s
            he, we = min(hs + k, H), min(ws + k, W)
            win = x_HW[hs:he, ws:we]
            out[i, j] = win.max() if kind == "max" else win.sum() / win.size
    return out


@pytest.mark.parametrize("size", [5, 6, 7, 8, 28, 32])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_caffe_pool_matches_reference(size, kind):
    rng = np.random.default_rng(size)
    x = rng.normal(size=(size, size)).astype(np.float32)
    got = np.asarray(caffe_pool(jnp.asarray(x)[None, :, :, None], kind))[0, :, :, 0]
    want = caffe_pool_reference(x, kind)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_pool_sizes_of_the_paper_nets():
    # CIFAR 32 -> 16 -> 8 (GAP 8x8), MNIST 28 -> 14 -> 7 (GAP 7x7): docs/paper-notes.md, "Architecture".
    assert final_hw(nin_cifar10()) == (8, 8)
    mnist = NINConfig(blocks=nin_cifar10().blocks, dropout_form="author", in_channels=1, input_hw=(28, 28))
    assert final_hw(mnist) == (7, 7)


def test_window_alignment_differs_from_symmetric_padding():
    # Caffe's windows start at 0 (last one overhangs); symmetric pad 1 would shift them.
    x = jnp.arange(36.0).reshape(1, 6, 6, 1)
    got = np.asarray(caffe_pool(x, "max"))[0, :, :, 0]
    assert got[0, 0] == x[0, 2, 2, 0]  # window rows/cols 0..2
    symmetric = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    assert not np.array_equal(got, np.asarray(symmetric)[0, :, :, 0])


def test_parameter_count_of_the_paper_cifar10_net():
    assert count_params(nnx.eval_shape(lambda: NIN(nin_cifar10(), rngs=nnx.Rngs(0)))) == 966_986


def test_init_is_normal_005_with_zero_biases():
    model = NIN(nin_cifar10(), rngs=nnx.Rngs(0))
    k = np.asarray(model.blocks[1].conv.kernel[...])
    assert abs(k.std() - 0.05) < 0.002 and abs(k.mean()) < 0.002
    for block in model.blocks:
        for conv in (block.conv, block.cccp_a, block.cccp_b):
            assert np.all(np.asarray(conv.bias[...]) == 0)


@pytest.mark.parametrize("hw", [(24, 24), (32, 32), (40, 48)])
def test_gap_head_any_input_size(hw):
    model = NIN(nin_cifar10().scaled(0.1), rngs=nnx.Rngs(0))
    out = model(jnp.ones((3, *hw, 3)))
    assert out.shape == (3, 10)


@pytest.mark.parametrize("head", ["fc", "fc_dropout", "gap_dense"])
def test_other_heads(head):
    cfg = nin_cifar10(head=head).scaled(0.1)
    model = NIN(cfg, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 32, 32, 3))
    assert model(x).shape == (2, 10)
    assert model(x, train=True, rngs=nnx.Rngs(dropout=1)).shape == (2, 10)
    assert model.classifier_path() == ("dense",)


def test_fc_head_adds_the_flattened_parameters():
    gap = count_params(nnx.eval_shape(lambda: NIN(nin_cifar10(), rngs=nnx.Rngs(0))))
    fc = count_params(nnx.eval_shape(lambda: NIN(nin_cifar10(head="fc"), rngs=nnx.Rngs(0))))
    assert fc - gap == 8 * 8 * 10 * 10 + 10


def test_caffe_zoo_variant_average_pools_after_the_second_block():
    """The model built with pool2="avg" computes max pool, average pool, no pool: its logits equal
    the three blocks' convolutions followed by the reference Caffe pools written out above."""
    model = NIN(nin_cifar10(pool2="avg").scaled(0.1), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))

    def convs(block, h):
        return np.asarray(nnx.relu(block.cccp_b(nnx.relu(block.cccp_a(nnx.relu(block.conv(jnp.asarray(h))))))))

    def pool(h, kind):
        return np.stack([caffe_pool_reference(h[0, :, :, c], kind) for c in range(h.shape[-1])], -1)[None].astype(np.float32)

    # The author's dropout after blocks 1 and 2 multiplies by 1 - 0.5 at test time.
    h = 0.5 * pool(convs(model.blocks[0], x), "max")
    h = 0.5 * pool(convs(model.blocks[1], h), "avg")
    np.testing.assert_allclose(model(x), convs(model.blocks[2], h).mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    as_published = NIN(nin_cifar10().scaled(0.1), rngs=nnx.Rngs(0))  # the same weights, max pool2
    assert not np.allclose(as_published(x), model(x), rtol=1e-3)


def test_final_relu_makes_scores_nonnegative_and_dropout_is_train_only():
    model = nnx.jit(lambda: NIN(nin_cifar10().scaled(0.1), rngs=nnx.Rngs(0)))()  # one program, not one per op
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    evaluate = nnx.jit(lambda model, x: model(x))
    train = nnx.jit(lambda model, x, seed: model(x, train=True, rngs=nnx.Rngs(dropout=jax.random.key(seed))))
    assert np.all(np.asarray(evaluate(model, x)) >= 0)
    np.testing.assert_array_equal(evaluate(model, x), evaluate(model, x))
    a, b = train(model, x, 1), train(model, x, 2)
    assert not np.allclose(a, b)


def test_gap_head_needs_one_map_per_class():
    with pytest.raises(ValueError):
        NINConfig(blocks=(BlockSpec(3, (8, 8, 7), init_std=None, pool="none", dropout=0.0),), dropout_form="author", num_classes=10)


@pytest.mark.parametrize("table, params", [("cifar10", 966_986), ("cifar100", 984_356), ("mnist", 349_674)])
def test_parameter_counts_of_the_table_recipes(table, params):
    # docs/paper-notes.md, "Architecture": computed from the author's cuda-convnet layer definitions.
    from nin_repro.recipe import load_experiment

    for variant in (v for v in load_experiment(table).TABLE.variants if not v.baseline):  # the baseline rows': test_baselines
        assert count_params(nnx.eval_shape(lambda: NIN(variant.recipe.model, rngs=nnx.Rngs(0)))) == params


def test_cifar100_init_follows_the_authors_config():
    from nin_repro.recipe import load_experiment

    model = NIN(load_experiment("cifar100").RECIPE.model, rngs=nnx.Rngs(0))
    assert abs(float(model.blocks[0].conv.kernel[...].std()) - 0.001) < 1e-4
    assert abs(float(model.blocks[0].cccp_a.kernel[...].std()) - 0.01) < 1e-3
    assert abs(float(model.blocks[2].cccp_b.kernel[...].std()) - 0.05) < 5e-3


@pytest.mark.parametrize("ties", [False, True])
def test_the_mask_gradient_of_max_pooling_equals_xlas(ties):
    # Caffe-aligned 3x3/2 pools on odd and even sizes (the last window hangs over the edge); with
    # ties (small integers) the first maximum of a window gets the gradient, as select_and_scatter does.
    from nin_repro.models import caffe_pool

    # 3x3/2 takes the interleaving path (models._scatter_3x3_stride_2), other pools the general one.
    @functools.partial(jax.jit, static_argnums=(2, 3, 4))
    def pool_and_grad(x, g, window, stride, grad):  # one program per case, not one per op
        y, vjp = jax.vjp(lambda x: caffe_pool(x, "max", window, stride, grad=grad), x)
        return y, vjp(g)[0]

    for hw, (window, stride) in (((8, 8), (3, 2)), ((7, 9), (3, 2)), ((7, 9), (2, 2)), ((7, 8), (3, 1))):
        key_x, key_g = jax.random.split(jax.random.key(hw[1]))
        x = jax.random.normal(key_x, (2, *hw, 3))
        if ties:
            x = jnp.round(2 * x)
        g = jax.random.normal(key_g, jax.eval_shape(lambda x: caffe_pool(x, "max", window, stride, grad="xla"), x).shape)
        y_xla, dx_xla = pool_and_grad(x, g, window, stride, "xla")
        y_mask, dx_mask = pool_and_grad(x, g, window, stride, "mask")
        np.testing.assert_array_equal(y_mask, y_xla)
        dx_mask, dx_xla = np.asarray(dx_mask), np.asarray(dx_xla)
        np.testing.assert_array_equal(dx_mask != 0, dx_xla != 0)  # the same input gets each window's gradient
        np.testing.assert_allclose(dx_mask, dx_xla, rtol=1e-6, atol=1e-7)  # overlapping windows: sums in another order
        assert np.count_nonzero(dx_mask) > 0


def test_a_network_with_the_mask_pool_gradient_trains_the_same():
    cfg = nin_cifar10().scaled(0.1)
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))

    def grads(config):
        graphdef, params = nnx.split(NIN(config, rngs=nnx.Rngs(0)), nnx.Param)
        return jax.grad(lambda p: nnx.merge(graphdef, p)(x, train=False).sum())(params)

    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads(dataclasses.replace(cfg, pool_grad="mask")), grads(dataclasses.replace(cfg, pool_grad="xla"))
    )
    assert cfg.pool_grad == "auto" and resolve_pool_grad("auto") == ("mask" if jax.default_backend() == "cpu" else "xla")
    with pytest.raises(ValueError, match="unknown pool_grad"):
        dataclasses.replace(cfg, pool_grad="fast")


def test_pointwise_is_the_1x1_conv_and_has_its_gradients():
    """models.pointwise (a 1x1 conv as one matmul, fast on XLA:CPU) gives the conv's values and weight gradients."""
    from nin_repro.models import pointwise

    conv = nnx.Conv(5, 3, (1, 1), rngs=nnx.Rngs(0))
    conv.bias[...] = jnp.arange(3.0)
    x = jax.random.normal(jax.random.key(1), (2, 4, 4, 5))
    np.testing.assert_allclose(pointwise(conv, x), conv(x), rtol=1e-5, atol=1e-5)
    graphdef, params = nnx.split(conv, nnx.Param)

    def grads(fn):
        return jax.grad(lambda p: jnp.sum(fn(nnx.merge(graphdef, p), x) ** 2))(params)

    for a, b in zip(jax.tree.leaves(grads(pointwise)), jax.tree.leaves(grads(lambda c, v: c(v)))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
