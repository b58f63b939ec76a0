"""nin-repro init-study at a tiny scale: what it writes, and the signal-scale finding it rests on."""

import dataclasses
import json
import math

import pytest

from nin_repro.data.digits import load_digits
from nin_repro.preprocess import fit_preprocessor
from nin_repro.recipe import load_experiment
from nin_repro.study import run_study, signal_scale

STUDY = load_experiment("init_study")
VARIANTS = {key: recipe for key, _, _, recipe in STUDY.VARIANTS}


def test_every_variant_changes_one_thing_of_the_published_mnist_recipe_or_says_so():
    """Against the published recipe with the variant's dropout form: the table's (the author's) for
    the author_ variants, inverted for those the committed study measured with it."""
    author = load_experiment("mnist").PUBLISHED
    assert author.model.dropout_form == "author" and STUDY.MNIST_PUBLISHED.model.dropout_form == "inverted"
    assert dataclasses.replace(STUDY.MNIST_PUBLISHED.model, dropout_form="author") == author.model  # nothing else differs
    for key, group, _, recipe in STUDY.VARIANTS:
        assert key.startswith("author_") == (recipe.model.dropout_form == "author"), key
        if group == "cifar10":
            continue
        published = author if recipe.model.dropout_form == "author" else STUDY.MNIST_PUBLISHED
        fields = {f for f in recipe.__dataclass_fields__ if getattr(recipe, f) != getattr(published, f)}
        fields -= {"dataset", "paper_phases", "seeds", "attempts"}  # the study's own frame
        if group not in ("input", "author input"):  # departures are measured on an input the input group studies
            fields -= {"preprocess"}
        limit = {"two changes": 2, "more changes": 4, "author departure": 4}.get(group, 1)
        assert len(fields) <= limit, (key, fields)


def test_the_authors_input_starts_with_class_scores_hundreds_of_times_larger():
    """The hypothesis the study tests: with N(0, 0.05) the class scores at init scale with the
    input; [0, 1] pixels give scores ~300x smaller than mean-subtracted 0-255 pixels."""
    x = load_digits().x_train[:64]
    scores = {}
    for kind in ("scale01", "pixel_mean"):
        pre = fit_preprocessor(kind, x)
        scores[kind] = signal_scale(VARIANTS[f"input_{kind}"], pre.apply(x))["class_scores"]
    assert scores["pixel_mean"] > 100 * scores["scale01"] > 0


def test_a_tiny_study_writes_its_table_and_each_seed_agrees_with_its_metrics(tmp_path):
    md, js = run_study(tmp_path / "results", tmp_path / "runs", seeds=1, epochs=0.25, width=0.125, only=("input_scale01", "input_pixel_mean"))
    assert md.parent.name == "partial"  # shortened: never where the full study goes
    record = json.loads(js.read_text())
    assert [v["key"] for v in record["variants"]] == ["input_scale01", "input_pixel_mean"]
    for v in record["variants"]:
        (seed,) = v["seeds"]
        metrics = [json.loads(line) for line in (tmp_path / "runs" / "init-study" / v["key"] / "seed_0" / "metrics.jsonl").read_text().splitlines()]
        assert seed["test_error_pct"] == pytest.approx(100 * metrics[-1]["test_error"])
        assert seed["learned"] == (seed["test_error_pct"] < 50)
        losses = [m["train_loss"] for m in metrics]
        assert seed["first_learning_epoch"] == next((i + 1 for i, loss in enumerate(losses) if loss < math.log(10) - 0.05), None)
    assert set(record["signal_scale"]) == set(VARIANTS)  # every variant's scale, trained or not
    blocks = {"block1", "block2", "block3", "class_scores"}
    for scale in record["signal_scale"].values():
        assert set(scale) == {"input", "max_abs_train_mean"} | blocks | {f"train_{b}" for b in blocks}
    # ZCA subtracts the training mean: a data provider's data_mean after it is ~0 (docs/paper-notes.md).
    assert record["signal_scale"]["cifar10_gcn_zca"]["max_abs_train_mean"] < 1e-3
    text = md.read_text()
    assert "Shortened run" in text and "| `input_pixel_mean` |" in text


def test_unknown_variant_is_a_usage_error(tmp_path):
    from nin_repro.errors import UsageError

    with pytest.raises(UsageError, match="--only nope: no such variant"):
        run_study(tmp_path, tmp_path, seeds=1, epochs=0.1, width=0.125, only=("nope",))


def test_training_sees_the_inverted_form_twice_as_large_after_each_dropout_layer():
    """Signal scale with masks on: the same weights and masks, so after block 1's dropout the
    inverted form's training signal is exactly 1 / (1 - 0.5) = 2x the author's, and at eval they
    differ by the author's x 0.5; the class scores (two dropout layers, zero biases) by 4x."""
    x = fit_preprocessor("pixel_mean", load_digits().x_train[:16]).apply(load_digits().x_train[:16])
    author = signal_scale(VARIANTS["author_input_pixel_mean"], x)
    inverted = signal_scale(VARIANTS["input_pixel_mean"], x)
    for key, factor in (("train_block1", 2.0), ("block1", 2.0), ("train_class_scores", 4.0), ("class_scores", 4.0)):
        assert inverted[key] == pytest.approx(factor * author[key], rel=1e-4), key
    assert author["train_block1"] != pytest.approx(author["block1"], rel=1e-2)  # masks on vs off


def test_signal_only_trains_nothing_and_leaves_the_trained_study_alone(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "init-study.md").write_text("the committed study\n")
    only = ("input_pixel_mean", "author_input_pixel_mean")
    md, js = run_study(results, tmp_path / "runs", width=0.125, only=only, signal_only=True)
    assert (results / "init-study.md").read_text() == "the committed study\n"
    assert md == results / "partial" / "init-study-signal.md"  # width < 1: shortened
    record = json.loads(js.read_text())
    assert record["variants"] == [] and not list((tmp_path / "runs").rglob("metrics.jsonl"))
    assert set(record["signal_scale"]) == set(only) and record["dropout_forms"]["author_input_pixel_mean"] == "author"
    assert "nothing was trained" in md.read_text() and "## Per seed" not in md.read_text()
    assert record["study"] == "init-study-signal"  # results/README.md links it apart from the trained study


def test_only_adds_to_the_study_and_keeps_the_other_rows_with_their_commit(tmp_path):
    from nin_repro.study import keep_other_rows

    order = [key for key, *_ in STUDY.VARIANTS]
    previous = {"provenance": {"commit": "old"}, "variants": [{"key": "input_gcn", "x": 1}, {"key": "input_scale01", "x": 2}, {"key": "gone", "x": 3}]}
    path = tmp_path / "init-study.json"
    path.write_text(json.dumps(previous))
    new = [{"key": "input_scale01", "x": 9, "provenance": {"commit": "new"}}]
    merged = keep_other_rows(path, new, order)
    # the re-run variant replaces its old row; the other keeps its commit; a variant no longer in the study is dropped
    assert [(r["key"], r["x"], r["provenance"]["commit"]) for r in merged] == [("input_scale01", 9, "new"), ("input_gcn", 1, "old")]
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="not readable"):
        assert keep_other_rows(path, new, order) == new
