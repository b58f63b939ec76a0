"""nin_repro.checkpoint: the training state and the run's position survive a save and a restore
bit for bit; the latest checkpoint is the one restored; an unfinished or damaged one is never used
as if it were whole."""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nin_repro import train
from nin_repro.checkpoint import Checkpointer, recipe_fingerprint
from tests.test_train import tiny_recipe


@pytest.fixture(scope="module")
def states():
    """Two different training states (parameters + SGD state with momentum and the LR hyperparameters)
    of the tiny model, and a fresh one to restore into."""
    recipe = tiny_recipe()
    model = train.init_model(recipe, 0)
    _, params = nnx.split(model, nnx.Param)
    tx = train.make_optimizer(recipe, params, model.classifier_path())

    def shifted(k: float, lr: float):
        """Every leaf moved by k (the momentum trace non-zero), the weights' LR set to lr."""
        p, opt = jax.tree.map(lambda x: x + jnp.asarray(k).astype(x.dtype), (params, tx.init(params)))
        opt.hyperparams["learning_rate"] = jnp.float32(lr)
        return p, opt

    return recipe, tx, shifted(1, 0.05), shifted(3, 0.007), (params, tx.init(params))


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_same(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(_leaves(a), _leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


POSITION = {"epoch": 2, "pos": 3, "step": 19, "epoch_loss": [4.25], "epoch_correct": [17], "epoch_seen": 3, "train_time": 1.5, "wall": 2.5, "watch": [{"run": 1}]}


def test_save_then_restore_gives_back_params_optimizer_state_and_position(tmp_path, states):
    recipe, _, one, _, fresh = states
    # The fresh state differs from the saved one (momentum 0, other weights), so restoring must load.
    assert not all(np.array_equal(x, y) for x, y in zip(_leaves(one), _leaves(fresh)))
    with Checkpointer(tmp_path, recipe, every_s=0) as ckpt:
        assert ckpt.restore(fresh) is None  # nothing saved yet: the run starts afresh
        assert ckpt.save(19, one, {"seed": 0, "position": POSITION}, force=True)
    with Checkpointer(tmp_path, recipe) as ckpt:  # a new process: a new Checkpointer on the same folder
        state, meta = ckpt.restore(fresh)
    _assert_same(state, one)
    params, opt = state
    assert float(opt.hyperparams["learning_rate"]) == pytest.approx(0.05)
    assert np.any(np.asarray(jax.tree.leaves(opt)[-1]) != 0)  # the momentum trace came back, not zeros
    assert meta == {"seed": 0, "position": POSITION}
    pos = train.RunPosition.from_meta(meta["position"], 1)
    assert (pos.epoch, pos.pos, pos.step, pos.epoch_loss, pos.epoch_correct) == (2, 3, 19, [4.25], [17])
    assert ckpt.dir.parent == (tmp_path / "checkpoints").resolve() and ckpt.dir.name == recipe_fingerprint(recipe)


def test_restore_takes_the_latest_of_the_kept_checkpoints(tmp_path, states):
    recipe, _, one, three, fresh = states
    with Checkpointer(tmp_path, recipe, every_s=0, keep=2) as ckpt:
        for step, state in ((4, fresh), (8, one), (12, three)):
            assert ckpt.save(step, state, {"position": {"step": step}}, force=True)
        assert not ckpt.save(12, one, {"position": {"step": 12}}, force=True)  # step 12 is saved already
    assert sorted(int(p.name) for p in ckpt.dir.iterdir()) == [8, 12]  # the last two kept
    with Checkpointer(tmp_path, recipe) as ckpt:
        state, meta = ckpt.restore(fresh)
    assert meta == {"position": {"step": 12}}
    _assert_same(state, three)


def test_saves_are_spaced_unless_forced(tmp_path, states):
    recipe, _, one, three, fresh = states
    with Checkpointer(tmp_path, recipe, every_s=3600) as ckpt:
        assert not ckpt.save(5, one, {"position": {"step": 5}})  # asked at an epoch boundary, too soon
        assert ckpt.save(6, three, {"position": {"step": 6}}, force=True)  # end of run or a signal
    with Checkpointer(tmp_path, recipe) as ckpt:
        assert ckpt.restore(fresh)[1] == {"position": {"step": 6}}


def test_another_recipe_or_seed_group_does_not_resume_this_checkpoint(tmp_path, states):
    recipe, _, one, _, fresh = states
    with Checkpointer(tmp_path, recipe, every_s=0) as ckpt:
        ckpt.save(7, one, {"position": {"step": 7}}, force=True)
    for other in (
        Checkpointer(tmp_path, dataclasses.replace(recipe, base_lr=recipe.base_lr / 2)),
        Checkpointer(tmp_path, recipe, seeds=[0, 1]),
        Checkpointer(tmp_path, recipe, attempts=[1]),
    ):
        with other:
            assert other.restore(fresh) is None
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    fp = recipe_fingerprint(recipe)
    assert f"{fp}-seeds_0_1" in names and f"{fp}-attempt_1" in names and fp in names


def test_an_unfinished_save_is_ignored_and_the_previous_checkpoint_restored(tmp_path, states):
    """A process killed while orbax writes leaves a temporary folder; the next run resumes the last whole checkpoint."""
    recipe, _, one, three, fresh = states
    with Checkpointer(tmp_path, recipe, every_s=0) as ckpt:
        ckpt.save(8, one, {"position": {"step": 8}}, force=True)
        ckpt.save(12, three, {"position": {"step": 12}}, force=True)
    shutil.copytree(ckpt.dir / "12", ckpt.dir / "16.orbax-checkpoint-tmp-1234567")
    for marker in (ckpt.dir / "16.orbax-checkpoint-tmp-1234567").rglob("commit_success.txt"):
        marker.unlink()
    with Checkpointer(tmp_path, recipe) as ckpt:
        state, meta = ckpt.restore(fresh)
    assert meta == {"position": {"step": 12}}
    _assert_same(state, three)


@pytest.mark.parametrize("damage", ["meta", "arrays"])
def test_a_damaged_checkpoint_is_never_restored_as_if_whole(tmp_path, states, damage):
    """The latest checkpoint's JSON position or array data overwritten: restoring refuses (raises)
    or falls back to the intact earlier checkpoint, never hands back the damaged state."""
    recipe, _, one, three, fresh = states
    with Checkpointer(tmp_path, recipe, every_s=0) as ckpt:
        ckpt.save(8, one, {"position": {"step": 8}}, force=True)
        ckpt.save(12, three, {"position": {"step": 12}}, force=True)
    if damage == "meta":
        (ckpt.dir / "12" / "meta" / "metadata").write_text('{"position": {"st')
    else:
        chunks = [p for p in (ckpt.dir / "12" / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
        assert chunks
        for p in chunks:
            p.write_bytes(b"\0" * p.stat().st_size)
    try:
        with Checkpointer(tmp_path, recipe) as ckpt:
            restored = ckpt.restore(fresh)
    except Exception as e:  # refused: the error names what is wrong
        assert isinstance(e, (ValueError, OSError)) or "checkpoint" in str(e).lower(), repr(e)
        return
    assert restored is not None, "a damaged checkpoint silently started the run afresh"
    state, meta = restored
    assert meta == {"position": {"step": 8}}
    _assert_same(state, one)


def test_the_metadata_is_plain_json_on_disk(tmp_path, states):
    """What `test_resume` and a person read: the position is JSON in <step>/meta/metadata."""
    recipe, _, one, _, _ = states
    with Checkpointer(tmp_path, recipe, every_s=0) as ckpt:
        ckpt.save(19, one, {"seed": 3, "position": POSITION}, force=True)
    assert json.loads((ckpt.dir / "19" / "meta" / "metadata").read_text()) == {"seed": 3, "position": POSITION}


def test_every_checkpoint_damaged_is_one_line_not_a_traceback(tmp_path, states):
    from nin_repro.errors import TrainingFailed

    recipe, _, one, _, fresh = states
    with Checkpointer(tmp_path, recipe, every_s=0) as ckpt:
        ckpt.save(8, one, {"position": {"step": 8}}, force=True)
    (ckpt.dir / "8" / "meta" / "metadata").write_text('{"position": {"st')
    with pytest.raises(TrainingFailed, match=r"every checkpoint in .* is damaged \(step 8: .*\): delete that folder to start the run afresh"):
        with Checkpointer(tmp_path, recipe) as again:
            again.restore(fresh)
