"""nin_repro.evaluate: every test example counts exactly once, whatever the eval batch; the K-seed
(vmapped) evaluation gives each seed's own numbers. Checked against errors and losses counted by
hand in numpy on a linear model whose padding would be misclassified if it counted."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nin_repro.evaluate import EvalSet, evaluate, evaluate_stacked, make_eval_fn, predict, stacked_eval_fn

M, D, K = 23, 12, 4  # 23 examples: not a multiple of the eval batches below


def linear_logits(params, x_BHWC):
    w, b = params
    return x_BHWC.reshape(x_BHWC.shape[0], -1) @ w + b


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(M, 2, 2, 3)).astype(np.float32)
    y = rng.integers(0, K, M).astype(np.int32)
    # The bias makes an all-zero (padding) image class 3, while the padding's label is 0: padding
    # that counted would add errors.
    params = [(rng.normal(size=(D, K)).astype(np.float32), np.array([0, 0, 0, 5.0 + s], np.float32)) for s in range(3)]
    return x, y, params


def by_hand(params, x, y) -> tuple[int, float, np.ndarray]:
    """Errors, mean cross-entropy and predictions of each example, one at a time, in float64 numpy."""
    w, b = (np.asarray(a, np.float64) for a in params)
    logits = x.reshape(len(x), -1).astype(np.float64) @ w + b
    pred = logits.argmax(-1)
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    return int(np.sum(pred != y)), float(np.mean(log_z - logits[np.arange(len(y)), y])), pred


@pytest.mark.parametrize("batch", [1, 5, 7, 23, 64])
def test_every_example_counts_once_whatever_the_batch(problem, batch):
    x, y, params = problem
    errors, loss, pred = by_hand(params[0], x, y)
    assert 0 < errors < M  # a case where dropping or padding examples changes the count
    data = EvalSet.build(x, y, batch)
    assert data.num_examples == M and data.x_NBHWC.shape[1] == min(batch, M)
    res = evaluate(make_eval_fn(linear_logits), params[0], data)
    assert (res.num_examples, res.num_errors) == (M, errors)
    assert res.error == errors / M
    assert res.loss == pytest.approx(loss, rel=1e-5)
    np.testing.assert_array_equal(predict(make_eval_fn(linear_logits), params[0], data), pred)


def test_the_last_partial_batch_is_counted_and_the_padding_is_not(problem):
    """Batch 7 over 23 examples: 4 batches, the last with 2 real examples and 5 of padding."""
    x, y, params = problem
    data = EvalSet.build(x, y, 7)
    assert data.x_NBHWC.shape[:2] == (4, 7) and int(data.mask_NB.sum()) == M and not bool(data.mask_NB[-1, 2:].any())
    eval_fn = make_eval_fn(linear_logits)
    _, _, pred = by_hand(params[0], x, y)
    wrong_tail = y.copy()
    wrong_tail[-2:] = (pred[-2:] + 1) % K  # the last 2 examples misclassified on purpose
    right_tail = y.copy()
    right_tail[-2:] = pred[-2:]
    a = evaluate(eval_fn, params[0], EvalSet.build(x, wrong_tail, 7))
    b = evaluate(eval_fn, params[0], EvalSet.build(x, right_tail, 7))
    assert a.num_errors - b.num_errors == 2
    # The 5 padded slots are predicted class 3 with label 0: had they counted, 5 more errors.
    _, _, all_preds = eval_fn(params[0], data.x_NBHWC, data.y_NB, data.mask_NB)
    assert np.all(np.asarray(all_preds)[M:] == 3) and np.all(np.asarray(data.y_NB).reshape(-1)[M:] == 0)


def test_vmapped_k_seed_evaluation_equals_each_seed_alone(problem):
    x, y, params = problem
    data = EvalSet.build(x, y, 7)
    eval_fn = make_eval_fn(linear_logits)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
    together = evaluate_stacked(stacked_eval_fn(eval_fn), stacked, data)
    alone = [evaluate(eval_fn, p, data) for p in params]
    assert len(together) == 3
    for t, a, p in zip(together, alone, params):
        errors, loss, _ = by_hand(p, x, y)
        assert (t.num_errors, t.num_examples, t.error) == (a.num_errors, a.num_examples, a.error) == (errors, M, errors / M)
        assert t.loss == pytest.approx(a.loss, rel=1e-6) and t.loss == pytest.approx(loss, rel=1e-5)
    assert len({t.loss for t in together}) == 3  # three different models, not one evaluated three times
