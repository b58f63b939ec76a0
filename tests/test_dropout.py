"""The two dropout forms (nin_repro.models.Dropout): the author's cuda-convnet neuron, which every
paper row uses, and inverted dropout [ours]. Numbers worked by hand on a four-element tensor."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nin_repro.models import NIN, BlockSpec, Dropout, NINConfig

X = jnp.array([1.0, -2.0, 3.0, 4.0])
W = jnp.array([0.5, 1.0, -1.0, 2.0])  # the upstream gradient of sum(W * out)
P = 0.25  # keep 0.75: the inverted scale 4/3 differs from the author's 1 and from 1 / keep^2


def _train(form: str, key: int):
    layer = Dropout(P, form)

    def loss(x):
        return jnp.sum(W * layer(x, train=True, rngs=nnx.Rngs(dropout=key)))

    out = layer(X, train=True, rngs=nnx.Rngs(dropout=key))
    return np.asarray(out), np.asarray(jax.grad(loss)(X))


def _a_mixed_mask_key() -> tuple[int, np.ndarray]:
    """A key whose mask keeps some units and drops others (X has no zeros, so out != 0 is the mask)."""
    for key in range(50):
        kept = _train("author", key)[0] != 0
        if 0 < kept.sum() < kept.size:
            return key, kept
    raise AssertionError("no mixed mask in 50 keys")


def test_author_form_passes_survivors_and_their_gradient_unscaled():
    key, kept = _a_mixed_mask_key()
    out, grad = _train("author", key)
    # kept units: x and W unchanged; dropped: 0.
    np.testing.assert_array_equal(out, np.where(kept, [1.0, -2.0, 3.0, 4.0], 0.0))
    np.testing.assert_array_equal(grad, np.where(kept, [0.5, 1.0, -1.0, 2.0], 0.0))


def test_inverted_form_scales_survivors_and_their_gradient_by_one_over_keep():
    key, kept = _a_mixed_mask_key()
    out, grad = _train("inverted", key)
    # 1 / 0.75 = 4/3: 1 -> 1.333.., -2 -> -2.666.., 3 -> 4, 4 -> 5.333..
    np.testing.assert_allclose(out, np.where(kept, [4 / 3, -8 / 3, 4.0, 16 / 3], 0.0), rtol=1e-6)
    np.testing.assert_allclose(grad, np.where(kept, [2 / 3, 4 / 3, -4 / 3, 8 / 3], 0.0), rtol=1e-6)


def test_inverted_form_is_nnx_dropout_bit_for_bit():
    key, _ = _a_mixed_mask_key()
    want = nnx.Dropout(P)(X, deterministic=False, rngs=nnx.Rngs(dropout=key))
    np.testing.assert_array_equal(_train("inverted", key)[0], np.asarray(want))


def test_eval_multiplies_by_keep_for_the_author_and_is_the_identity_inverted():
    np.testing.assert_array_equal(np.asarray(Dropout(P, "author")(X, train=False, rngs=None)), [0.75, -1.5, 2.25, 3.0])
    np.testing.assert_array_equal(np.asarray(Dropout(P, "inverted")(X, train=False, rngs=None)), np.asarray(X))


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="dropout_form"):
        NINConfig(blocks=(BlockSpec(3, (4, 4, 10), init_std=None, pool="none", dropout=0.0),), dropout_form="scaled", in_channels=1, input_hw=(8, 8))


def _net(form: str) -> NINConfig:
    return NINConfig(
        blocks=(
            BlockSpec(3, (6, 5, 4), init_std=None, pool="max", dropout=0.5),
            BlockSpec(3, (6, 5, 4), init_std=None, pool="max", dropout=0.5),
            BlockSpec(3, (6, 5, 10), init_std=None, pool="none", dropout=0.0),
        ),
        dropout_form=form,
        in_channels=1,
        input_hw=(12, 12),
    )


def _with_random_biases(model: NIN) -> NIN:
    for i, block in enumerate(model.blocks):
        for j, name in enumerate(("conv", "cccp_a", "cccp_b")):
            bias = getattr(block, name).bias
            bias[...] = jax.random.normal(jax.random.key(10 * i + j), bias.shape) * 0.1
    return model


def test_eval_outputs_of_the_two_forms_differ_as_the_algebra_says():
    """Identity tested: a dropout layer at test time multiplies its output h by q = 1 - p (author) or
    by 1 (inverted), and the next layer is a convolution, linear in h: conv(q h; W, b) = conv(h; q W, b).
    So the author's net with weights W gives exactly the logits of the inverted net whose first conv
    after each dropout layer has kernel q W (biases unchanged), for any biases. With every bias 0 the
    net is positively homogeneous in each dropout layer's output, so then the author's logits are
    q^2 times the inverted ones (two dropout layers)."""
    x = jax.random.normal(jax.random.key(1), (3, 12, 12, 1))
    author = _with_random_biases(NIN(_net("author"), rngs=nnx.Rngs(0)))
    inverted = _with_random_biases(NIN(_net("inverted"), rngs=nnx.Rngs(0)))
    plain = np.asarray(inverted(x))
    for block in list(inverted.blocks)[1:]:  # the conv after each of the two dropout layers
        block.conv.kernel[...] = block.conv.kernel[...] * 0.5
    np.testing.assert_allclose(np.asarray(author(x)), np.asarray(inverted(x)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(author(x)), plain, rtol=1e-3)

    zero_b = [NIN(_net(form), rngs=nnx.Rngs(0)) for form in ("author", "inverted")]  # nnx.Conv biases start at 0
    np.testing.assert_allclose(np.asarray(zero_b[0](x)), 0.25 * np.asarray(zero_b[1](x)), rtol=1e-5, atol=1e-7)


def test_training_signal_of_the_author_form_is_keep_times_the_inverted_one():
    """Same weights, same dropout key: every mask is the same, so after the first dropout layer the
    author's training activations are q times the inverted ones, and with zero biases the logits are
    q^2 times (the 4x the review found, for p = 0.5)."""
    x = jax.random.normal(jax.random.key(2), (3, 12, 12, 1))
    author, inverted = (NIN(_net(form), rngs=nnx.Rngs(0)) for form in ("author", "inverted"))
    la = np.asarray(author(x, train=True, rngs=nnx.Rngs(dropout=7)))
    li = np.asarray(inverted(x, train=True, rngs=nnx.Rngs(dropout=7)))
    assert np.abs(li).max() > 0
    np.testing.assert_allclose(la, 0.25 * li, rtol=1e-5, atol=1e-7)


def test_old_records_without_a_form_read_as_inverted():
    from nin_repro.models import config_from_dict

    d = dataclasses.asdict(_net("author"))
    del d["dropout_form"]
    assert config_from_dict(d).dropout_form == "inverted"


def test_paper_rows_use_the_authors_form_and_set_can_choose_inverted():
    from nin_repro.errors import UsageError
    from nin_repro.recipe import load_experiment
    from nin_repro.reproduce import apply_set

    for table in ("cifar10", "cifar100", "svhn", "mnist", "ablate_gap", "ablate_dropout"):
        for variant in (v for v in load_experiment(table).TABLE.variants if not v.baseline):  # NIN and CNN rows; maxout: test_baselines
            inverted = variant.recipe.model.dropout_form == "inverted"
            # inverted dropout only where the row names it as ours
            assert not inverted or any("inverted dropout" in o and "[ours" in o for o in variant.recipe.ours), (table, variant.key)
    assert load_experiment("mnist").PUBLISHED.model.dropout_form == "author"
    recipe = load_experiment("cifar10").RECIPE
    assert apply_set(recipe, ("model.dropout_form=inverted",)).model.dropout_form == "inverted"
    with pytest.raises(UsageError, match="dropout_form"):
        apply_set(recipe, ("model.dropout_form=scaled",))
