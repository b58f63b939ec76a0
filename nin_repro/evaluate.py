"""Exact evaluation: every test example counts once (pad to whole batches and mask the padding,
never drop the remainder)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nin_repro.xla_options import jit_repeated


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """A test set on the device, padded to ``num_batches x batch_size`` with a mask."""

    x_NBHWC: jax.Array
    y_NB: jax.Array
    mask_NB: jax.Array
    num_examples: int

    @classmethod
    def build(cls, x_MHWC: np.ndarray, y_M: np.ndarray, batch_size: int) -> "EvalSet":
        m = len(x_MHWC)
        batch_size = max(1, min(batch_size, m))
        nb = -(-m // batch_size)
        pad = nb * batch_size - m
        x = np.concatenate([x_MHWC, np.zeros((pad, *x_MHWC.shape[1:]), x_MHWC.dtype)])
        y = np.concatenate([y_M, np.zeros(pad, y_M.dtype)])
        mask = np.concatenate([np.ones(m, bool), np.zeros(pad, bool)])
        return cls(
            jnp.asarray(x.reshape(nb, batch_size, *x.shape[1:])),
            jnp.asarray(y.reshape(nb, batch_size)),
            jnp.asarray(mask.reshape(nb, batch_size)),
            m,
        )


@dataclasses.dataclass(frozen=True)
class EvalResult:
    error: float  # fraction misclassified over all num_examples
    loss: float  # mean cross-entropy
    num_examples: int
    num_errors: int


def make_eval_fn(logits_fn: Callable[[object, jax.Array], jax.Array]):
    """``logits_fn(params, x_BHWC) -> logits`` in eval mode. Returns a jitted
    ``(params, EvalSet arrays) -> (errors, loss_sum, predictions)``."""

    @jit_repeated
    def run(params, x_NBHWC, y_NB, mask_NB):
        def body(carry, batch):
            errors, loss_sum = carry
            x, y, mask = batch
            logits = logits_fn(params, x)
            pred = jnp.argmax(logits, -1)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            errors += jnp.sum((pred != y) & mask)
            loss_sum += jnp.sum(jnp.where(mask, loss, 0.0))
            return (errors, loss_sum), pred

        (errors, loss_sum), preds = jax.lax.scan(body, (jnp.int32(0), jnp.float32(0.0)), (x_NBHWC, y_NB, mask_NB))
        return errors, loss_sum, preds.reshape(-1)

    return run


def evaluate(eval_fn, params, data: EvalSet, read: bool = True):
    """The EvalResult of ``params`` on ``data``. ``read=False``: queue the evaluation on the device
    and return a function that waits for it, so the caller can queue more work first."""
    errors, loss_sum, _ = eval_fn(params, data.x_NBHWC, data.y_NB, data.mask_NB)

    def result() -> EvalResult:
        n_errors = int(errors)
        return EvalResult(n_errors / data.num_examples, float(loss_sum) / data.num_examples, data.num_examples, n_errors)

    return result() if read else result


def stacked_eval_fn(eval_fn):
    """``eval_fn`` (from ``make_eval_fn``) for K models stacked on a leading axis of the parameters:
    one vmapped program, compiled with the same options (they apply to a top-level jit only)."""
    return jit_repeated(jax.vmap(eval_fn.__wrapped__, in_axes=(0, None, None, None)))


def evaluate_stacked(eval_fn_K, params_K, data: EvalSet, read: bool = True):
    """``evaluate`` for K stacked models with ``stacked_eval_fn(eval_fn)``: one device call and one
    transfer for all K, not K of each; a list of K EvalResults (``read=False``: a function returning it)."""
    errors_K, loss_K, _ = eval_fn_K(params_K, data.x_NBHWC, data.y_NB, data.mask_NB)

    def results() -> list[EvalResult]:
        n = data.num_examples
        return [EvalResult(int(e) / n, float(loss) / n, n, int(e)) for e, loss in zip(np.asarray(errors_K), np.asarray(loss_K))]

    return results() if read else results


def predict(eval_fn, params, data: EvalSet) -> np.ndarray:
    """Predicted class of every real (unpadded) example."""
    _, _, preds = eval_fn(params, data.x_NBHWC, data.y_NB, data.mask_NB)
    return np.asarray(preds)[: data.num_examples]
