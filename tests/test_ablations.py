"""Ablations (Table 5 / Sec. 4.6 GAP vs FC, Fig. 3 dropout): the conventional CNN and its locally
connected layer, claims under a table, the error-curve figure, the two experiment tables."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nin_repro.experiments.ablate_gap import cnn as conv_local_cifar10
from nin_repro.experiments.cifar10 import nin as nin_cifar10

from nin_repro import results as R
from nin_repro.figures import SMOKE_CAPTION
from nin_repro.models import (
    NIN,
    ConvNet,
    ConvNetConfig,
    LocallyConnected2D,
    build_model,
    config_from_dict,
    count_params,
)
from nin_repro.recipe import Claim, Table, Variant, load_experiment

pytestmark = pytest.mark.usefixtures("tiny_runs_compile_at_o0")  # tiny runs: conftest.py

PROV = {"commit": "abc", "device": {"kind": "cpu", "platform": "cpu", "count": 1}, "versions": {}, "date": "d", "hostname": "h"}


# --------------------------------------------------------------------------- locally connected layer


def local_reference(x_BHWC, kernel, bias, padding, stride):
    """Unshared-weight layer written as loops over output positions."""
    x = np.pad(x_BHWC, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    oh, ow, k, _, _, cout = kernel.shape
    out = np.zeros((x.shape[0], oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            window = x[:, i * stride : i * stride + k, j * stride : j * stride + k, :]  # B, k, k, C
            out[:, i, j, :] = np.einsum("bijc,ijco->bo", window, kernel[i, j]) + bias[i, j]
    return out


@pytest.mark.parametrize("hw, k, padding, stride", [((6, 5), 3, 1, 1), ((7, 7), 3, 0, 2), ((8, 8), 2, 0, 1)])
def test_locally_connected_matches_loops(hw, k, padding, stride):
    layer = LocallyConnected2D(3, 4, k, hw, padding=padding, stride=stride, rngs=nnx.Rngs(0))
    layer.bias[...] = jax.random.normal(jax.random.key(1), layer.bias.shape)
    x = np.asarray(jax.random.normal(jax.random.key(2), (2, *hw, 3)))
    got = np.asarray(layer(jnp.asarray(x)))
    want = local_reference(x, np.asarray(layer.kernel[...]), np.asarray(layer.bias[...]), padding, stride)
    assert got.shape == want.shape == (2, *layer.out_hw, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_locally_connected_weights_are_unshared_and_size_checked():
    layer = LocallyConnected2D(2, 3, 3, (4, 4), padding=1, rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (4, 4, 3, 3, 2, 3) and layer.bias.shape == (4, 4, 3)
    # He-normal over one position's fan-in (3*3*2), not over all positions.
    std = float(np.asarray(layer.kernel[...]).std())
    assert 0.5 * (2 / 18) ** 0.5 < std < 1.5 * (2 / 18) ** 0.5
    # The same input at two positions gives different outputs: each position has its own weights.
    y = np.asarray(layer(jnp.ones((1, 4, 4, 2))))
    assert not np.allclose(y[0, 1, 1], y[0, 2, 2])
    with pytest.raises(ValueError, match="built for 4x4"):
        layer(jnp.ones((1, 5, 4, 2)))


# --------------------------------------------------------------------------- the Sec. 4.6 CNN


def test_cnn_head_parameter_counts():
    # Shapes only (nnx.eval_shape): nothing is initialized.
    counts = {h: count_params(nnx.eval_shape(lambda: ConvNet(conv_local_cifar10(h), rngs=nnx.Rngs(0)))) for h in ("fc", "fc_dropout", "gap")}
    convs = (5 * 5 * 3 * 64 + 64) + (5 * 5 * 64 * 64 + 64) + (3 * 3 * 64 * 64 + 64)

    def local(maps):
        return 8 * 8 * (3 * 3 * 64 * maps + maps)  # unshared weights and biases at 8x8

    assert counts["fc"] == convs + local(16) + (8 * 8 * 16 * 10 + 10) == 745_354
    assert counts["fc_dropout"] == counts["fc"]  # dropout has no parameters
    assert counts["gap"] == convs + local(10) == 513_536
    assert counts["fc"] - counts["gap"] == local(16) - local(10) + 8 * 8 * 16 * 10 + 10


def test_cnn_forward_heads_and_classifier_path():
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))

    def cfg(head):
        return conv_local_cifar10(head, input_hw=(16, 16)).scaled(0.125)

    fc = nnx.eval_shape(lambda: build_model(cfg("fc"), rngs=nnx.Rngs(0)))
    assert isinstance(fc, ConvNet) and fc.classifier_path() == ("dense",) and fc.local.out_hw == (4, 4)
    models = {h: build_model(cfg(h), rngs=nnx.Rngs(0)) for h in ("fc_dropout", "gap")}
    for head, path in (("fc_dropout", ("dense",)), ("gap", ("local",))):
        assert models[head].classifier_path() == path and models[head](x).shape == (2, 10)
    drop = models["fc_dropout"]
    np.testing.assert_array_equal(drop(x), drop(x))  # dropout only in training
    assert not np.allclose(drop(x, train=True, rngs=nnx.Rngs(dropout=1)), drop(x, train=True, rngs=nnx.Rngs(dropout=2)))
    assert np.all(np.asarray(models["gap"](x)) >= 0)  # ReLU on the class maps, as NIN's cccp6
    assert isinstance(nnx.eval_shape(lambda: build_model(nin_cifar10(), rngs=nnx.Rngs(0))), NIN)


def test_cnn_config_rules_and_round_trip():
    with pytest.raises(ValueError, match="one map per class"):
        conv_local_cifar10("gap", local_features=16)
    with pytest.raises(ValueError, match="unknown head"):
        conv_local_cifar10("gap_dense")
    # A quarter-width model as built: 64 -> 16 maps per conv, the local layer 16 -> 4 maps; the GAP
    # variant's local layer keeps one map per class.
    small = nnx.eval_shape(lambda: build_model(conv_local_cifar10("fc").scaled(0.25), rngs=nnx.Rngs(0)))
    assert [c.kernel.shape[-1] for c in small.convs] == [16, 16, 16] and small.dense.kernel.shape == (8 * 8 * 4, 10)
    small_gap = nnx.eval_shape(lambda: build_model(conv_local_cifar10("gap").scaled(0.25), rngs=nnx.Rngs(0)))
    maps = jax.eval_shape(lambda: build_model(conv_local_cifar10("gap").scaled(0.25), rngs=nnx.Rngs(0)).class_maps(jnp.zeros((1, 32, 32, 3))))
    assert small_gap.dense is None and maps.shape == (1, 8, 8, 10)
    he = conv_local_cifar10("fc", init_std=0.01).with_he_init()
    assert he.init_std is None and he.final_relu is False
    assert conv_local_cifar10("fc").forward_macs() == 32 * 32 * 75 * 64 + 16 * 16 * 1600 * 64 + 8 * 8 * 576 * 64 + 8 * 8 * 576 * 16 + 8 * 8 * 16 * 10
    for cfg in (
        conv_local_cifar10("gap"),
        nin_cifar10(head="fc"),
        dataclasses.replace(nin_cifar10(), blocks=tuple(dataclasses.replace(b, init_std=None) for b in nin_cifar10().blocks)),
    ):
        assert config_from_dict(json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg


# --------------------------------------------------------------------------- claims


def vr(key, errors, shortened=None):
    return R.VariantResult(
        key=key,
        method=key.upper(),
        errors_pct=tuple(errors),
        seeds=tuple(range(len(errors))),
        epochs=260.0,
        planned_epochs=260.0,
        steps=10,
        wall_s=1.0,
        train_img_per_s=1.0,
        schedule="paper",
        ours=(),
        shortened=shortened,
        run_dirs=(),
        data_source="x",
        num_test=10,
    )


ORDER = Claim("order", ("gap", "fcd", "fc"), "GAP < FC + Dropout < FC", "GAP is best", "Table 5 [R]")
REDUCTION = Claim("relative_reduction", ("drop", "nodrop"), "Dropout reduces test error by > 20 % relative", "more than 20 %", threshold=0.2)


def test_order_claim_holds_and_does_not_hold():
    ev = R.evaluate_claim(ORDER, [vr("fc", [11.6]), vr("gap", [10.4, 10.6]), vr("fcd", [10.9])])
    assert ev["status"] == "holds" and ev["holds"] is True and ev["ours"] == "10.50 < 10.90 < 11.60"
    assert ev["means"] == {"gap": pytest.approx(10.5), "fcd": 10.9, "fc": 11.6}
    ev = R.evaluate_claim(ORDER, [vr("fc", [11.6]), vr("gap", [11.0]), vr("fcd", [10.9])])
    assert ev["status"] == "does not hold" and ev["holds"] is False and ev["ours"] == "11.00 > 10.90 < 11.60"
    tie = R.evaluate_claim(ORDER, [vr("fc", [11.0]), vr("gap", [10.0]), vr("fcd", [10.0])])
    assert tie["holds"] is False and tie["ours"] == "10.00 = 10.00 < 11.00"


def test_relative_reduction_claim():
    ev = R.evaluate_claim(REDUCTION, [vr("drop", [10.5]), vr("nodrop", [14.0])])
    assert ev["holds"] is True and ev["ours"] == "14.00 → 10.50, 25.0 % relative reduction" and ev["threshold"] == 0.2
    ev = R.evaluate_claim(REDUCTION, [vr("drop", [12.0]), vr("nodrop", [14.0])])
    assert ev["status"] == "does not hold" and "14.3 %" in ev["ours"]
    ev = R.evaluate_claim(REDUCTION, [vr("drop", [15.0]), vr("nodrop", [14.0])])  # dropout made it worse
    assert ev["holds"] is False and "-7.1 %" in ev["ours"]
    with pytest.raises(ValueError):
        Claim("relative_reduction", ("a",), "x", "y", threshold=0.2)
    with pytest.raises(ValueError):
        Claim("bigger", ("a", "b"), "x", "y")


def test_claims_are_not_checked_on_smoke_shortened_or_missing_runs():
    good = [vr("drop", [10.0]), vr("nodrop", [14.0])]
    assert R.evaluate_claim(REDUCTION, good, smoke=True)["status"] == "n/a (smoke)"
    smoke_rows = [vr("drop", [10.0], shortened="smoke: tiny"), vr("nodrop", [14.0], shortened="smoke: tiny")]
    assert R.evaluate_claim(REDUCTION, smoke_rows)["status"] == "n/a (smoke)"
    short = [vr("drop", [10.0], shortened="shortened: 12 of 200 epochs"), vr("nodrop", [14.0])]
    ev = R.evaluate_claim(REDUCTION, short)
    assert ev["status"] == "not checked (shortened)" and ev["holds"] is None and ev["ours"].startswith("14.00 → 10.00")
    ev = R.evaluate_claim(REDUCTION, good[:1])
    assert ev["status"] == "not checked (not run: nodrop)" and ev["holds"] is None and ev["ours"] is None


def claim_table(**kw) -> Table:
    recipe = dataclasses.replace(load_experiment("cifar10").RECIPE, model=nin_cifar10().scaled(0.1))
    keys = ("gap", "fcd", "fc")
    from nin_repro.recipe import PaperRow

    base = dict(
        name="ablate-x",
        title="Table 5: GAP vs FC",
        source="the paper",
        rows=(PaperRow("FC", 11.59, "t5", variant="fc"), PaperRow("FC + Dropout", 10.88, "t5", variant="fcd"), PaperRow("GAP", 10.41, "t5", variant="gap")),
        variants=tuple(Variant(k, k.upper(), recipe) for k in keys),
        tolerance_pp=1.0,
        claims=(ORDER,),
    )
    base.update(kw)
    return Table(**base)


def test_claims_rendered_under_the_table_and_stored_in_json(tmp_path):
    res = [vr("fc", [11.7]), vr("fcd", [10.9]), vr("gap", [10.5])]
    md_path, json_path = R.write_table(claim_table(), res, tmp_path, prov=PROV)
    md = md_path.read_text()
    line = next(line for line in md.splitlines() if "GAP < FC + Dropout < FC:" in line)
    assert line.startswith("- **GAP < FC + Dropout < FC: holds** (ours: 10.50 < 10.90 < 11.70; paper: 10.41 < 10.88 < 11.59)")
    assert "“GAP is best” — Table 5 [R]" in line
    assert md.index("## Claims") > md.index("| Method |")  # under the table
    data = json.loads(json_path.read_text())
    (claim,) = data["claims"]
    assert claim["status"] == "holds" and claim["holds"] is True and claim["label"] == ORDER.label and claim["paper"] == "10.41 < 10.88 < 11.59"
    assert data["figure"] is None

    smoke = [dataclasses.replace(r, shortened="smoke: tiny") for r in res]
    md_path, json_path = R.write_table(claim_table(), smoke, tmp_path, smoke=True, prov=PROV)
    assert "- **GAP < FC + Dropout < FC: n/a (smoke)** (ours: 10.50 < 10.90 < 11.70" in md_path.read_text()
    assert json.loads(json_path.read_text())["claims"][0]["holds"] is None

    short = [dataclasses.replace(r, shortened="shortened: 2 of 260 epochs") for r in res[:2]]
    md = R.write_table(claim_table(), short, tmp_path / "s", prov=PROV)[0].read_text()
    assert "- **GAP < FC + Dropout < FC: not checked (not run: gap)** (paper: 10.41 < 10.88 < 11.59)" in md


def test_tables_without_claims_render_as_before(tmp_path):
    md_path, json_path = R.write_table(claim_table(claims=()), [vr("fc", [11.7])], tmp_path, prov=PROV)
    assert "## Claims" not in md_path.read_text() and "## Figure" not in md_path.read_text()
    assert json.loads(json_path.read_text())["claims"] == []


# --------------------------------------------------------------------------- the figure


def fake_run(folder, train, test):
    folder.mkdir(parents=True)
    lines = [json.dumps({"epoch": i + 1, "train_error": a, "test_error": b}) for i, (a, b) in enumerate(zip(train, test))]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_plot_error_curves_draws_each_labels_mean_curves(tmp_path, drawn):
    from nin_repro.figures import plot_error_curves, read_metrics

    a = fake_run(tmp_path / "a", [0.9, 0.6, 0.4], [0.9, 0.7, 0.5])
    b = fake_run(tmp_path / "b", [0.9, 0.5, 0.2], [0.9, 0.75, 0.6])
    b2 = fake_run(tmp_path / "b2", [0.8, 0.4, 0.1], [0.85, 0.7, 0.65])
    out = plot_error_curves({"with dropout": a, "without dropout": [b, b2]}, tmp_path / "fig" / "curves.png", "Fig. 3", "untrained smoke model — not evidence")
    data = out.read_bytes()
    assert out == tmp_path / "fig" / "curves.png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    # What is drawn, in %: a's curves; b and b2 averaged epoch by epoch: test (0.9+0.85)/2 = 87.5,
    # (0.75+0.7)/2 = 72.5, (0.6+0.65)/2 = 62.5; training 85, 45, 15. Solid test, dashed training, one colour per label.
    (fig,) = drawn
    (ax,) = fig.axes
    curves = {line.get_label(): (line.get_linestyle(), line.get_color(), list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}
    assert curves == {
        "with dropout: test error": ("-", "C0", [1, 2, 3], pytest.approx([90.0, 70.0, 50.0])),
        "with dropout: training error": ("--", "C0", [1, 2, 3], pytest.approx([90.0, 60.0, 40.0])),
        "without dropout: test error (mean of 2 runs)": ("-", "C1", [1, 2, 3], pytest.approx([87.5, 72.5, 62.5])),
        "without dropout: training error (mean of 2 runs)": ("--", "C1", [1, 2, 3], pytest.approx([85.0, 45.0, 15.0])),
    }
    assert ax.get_title() == "Fig. 3" and ax.get_ylabel() == "error (%)"
    assert [t.get_text() for t in fig.texts] == ["untrained smoke model — not evidence"]
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # written atomically, nothing left over
    assert read_metrics(a)[2]["test_error"] == 0.5
    with pytest.raises(FileNotFoundError):
        plot_error_curves({"x": tmp_path / "missing"}, tmp_path / "x.png", "t")


def test_table_figure_is_drawn_next_to_the_markdown(tmp_path, drawn):
    runs = {k: fake_run(tmp_path / "runs" / k, [0.9, 0.5], [0.9, 0.6]) for k in ("drop", "nodrop")}
    table = claim_table(name="ablate-y", claims=(REDUCTION,), rows=(), variants=(), figure="error_curves")
    res = [dataclasses.replace(vr(k, [e], shortened="smoke: tiny"), run_dirs=(str(runs[k]),)) for k, e in (("drop", 10.0), ("nodrop", 14.0))]
    md_path, json_path = R.write_table(table, res, tmp_path / "results", smoke=True, prov=PROV)
    png = md_path.parent / "ablate-y.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    (fig,) = drawn  # each variant's run, under its method's name, in %
    (ax,) = fig.axes
    curves = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
    assert curves == {f"{r.method}: {what} error": v for r in res for what, v in (("test", [90.0, 60.0]), ("training", [90.0, 50.0]))}
    assert ax.get_title() == table.title and [t.get_text() for t in fig.texts] == [SMOKE_CAPTION]
    md = md_path.read_text()
    assert "![Table 5: GAP vs FC](ablate-y.png)" in md and "not evidence" in md
    assert "Dropout reduces test error by > 20 % relative: n/a (smoke)" in md
    fig = json.loads(json_path.read_text())["figure"]
    assert fig["path"] == str(png) and fig["error"] is None
    # A run folder that is gone does not lose the table: the markdown says why there is no figure.
    gone = [dataclasses.replace(r, run_dirs=(str(tmp_path / "nowhere"),)) for r in res]
    md_path, json_path = R.write_table(table, gone, tmp_path / "results2", smoke=True, prov=PROV)
    assert "Figure not drawn: FileNotFoundError" in md_path.read_text()
    assert json.loads(json_path.read_text())["figure"]["path"] is None


# --------------------------------------------------------------------------- the experiment tables


def _paper_notes_rows(title: str) -> list[tuple[str, float]]:
    """(method, error) of one bullet of docs/paper-notes.md, the transcription of the paper, in order."""
    notes = (Path(__file__).resolve().parents[1] / "docs" / "paper-notes.md").read_text()
    start = notes.index(f"- **{title}**")
    text = " ".join(notes[start : notes.index("\n- ", start + 1)].split())
    rows = [re.match(r"\s*\**(.+?)(?: \[\d+\])? (\d+\.\d+)\**", item) for item in text.split(":", 1)[1].split(" · ")]
    return [(m[1], float(m[2])) for m in rows]


@pytest.mark.parametrize(
    "name, title",
    [("cifar10", "Table 1, CIFAR-10"), ("cifar100", "Table 2, CIFAR-100"), ("svhn", "Table 3, SVHN"), ("mnist", "Table 4, MNIST")],
)
def test_paper_rows_are_the_paper_notes_rows(name, title):
    """Each table's paper rows, in order, are the ones docs/paper-notes.md transcribes from the
    paper (our own extra rows, marked "(not the paper's recipe)", aside)."""
    rows = [(r.method, r.error) for r in load_experiment(name).TABLE.rows if "not the paper's recipe" not in r.method]
    assert rows == _paper_notes_rows(title)


def test_ablate_gap_table():
    table = load_experiment("ablate_gap").TABLE
    assert table.name == "ablate-gap"
    paper = {r.variant: r.error for r in table.rows}
    # Table 5 (NIN: FC, FC + dropout, GAP) then Section 4.6 (the CNN: FC, FC + dropout, GAP), as the notes transcribe them.
    notes = [e for _, e in _paper_notes_rows("Table 5, GAP vs FC on CIFAR-10") + _paper_notes_rows("Section 4.6, a conventional CNN on CIFAR-10")]
    assert [paper[k] for k in ("nin_fc", "nin_fc_dropout", "nin_gap", "cnn_fc", "cnn_fc_dropout", "cnn_gap")] == notes
    assert "not re-run by the authors" in table.paper_row("cnn_fc_dropout").citation
    assert {v.key for v in table.variants} == set(paper)
    cifar10 = load_experiment("cifar10").RECIPE
    assert table.variant("nin_gap").recipe == cifar10
    # Each variant's network, as built, has the head its name says: a dense layer on the flattened
    # maps (with dropout before it for "_dropout"), or none (GAP of one map per class).
    x = jnp.zeros((1, 32, 32, 3))
    for v in table.variants:
        model = nnx.eval_shape(lambda: build_model(v.recipe.model, rngs=nnx.Rngs(0)))
        maps = jax.eval_shape(lambda: build_model(v.recipe.model, rngs=nnx.Rngs(0)).class_maps(x)).shape
        if v.key.endswith("_gap"):
            assert model.dense is None and maps[-1] == 10, v.key
        else:
            assert model.dense.kernel.shape == (maps[1] * maps[2] * maps[3], 10), v.key
            assert model.head_dropout.rate == (0.5 if v.key.endswith("_dropout") else 0.0), v.key
    # The NIN body is Table 1's everywhere; only the head differs.
    for key in ("nin_fc", "nin_fc_dropout"):
        assert table.variant(key).recipe.model.blocks == cifar10.model.blocks
    # The three CNN rows share their sizes; only the local layer's maps (16 -> 10) and the head differ.
    cnn = [table.variant(k).recipe.model for k in ("cnn_fc", "cnn_fc_dropout", "cnn_gap")]
    assert all(isinstance(m, ConvNetConfig) for m in cnn)
    # The paper: "three convolutional layers and one locally connected layer" of 16 maps (10 for GAP).
    assert cnn[0].convs == cnn[1].convs == cnn[2].convs and len(cnn[0].convs) == 3
    assert [m.local_features for m in cnn] == [16, 16, 10] and len({m.local_kernel for m in cnn}) == 1
    assert all(any("[ours]" in o or "CNN sizes" in o for o in table.variant(k).recipe.ours) for k in ("cnn_fc", "cnn_gap"))
    keys = {v.key for v in table.variants}
    assert table.claims and all(set(c.variants) <= keys for c in table.claims)
    assert table.claims[0].variants == ("nin_gap", "nin_fc_dropout", "nin_fc")


def test_ablate_dropout_table():
    table = load_experiment("ablate_dropout").TABLE
    assert table.name == "ablate-dropout" and table.rows == () and table.figure == "error_curves"
    drop, nodrop = table.variant("nin_dropout").recipe, table.variant("nin_no_dropout").recipe
    assert [b.dropout for b in drop.model.blocks] == [0.5, 0.5, 0.0] and [b.dropout for b in nodrop.model.blocks] == [0.0, 0.0, 0.0]
    assert drop.schedule_epochs(390) == nodrop.schedule_epochs(390) == 200 and drop.lr_factor(390 * 199, 390) == 1.0
    assert dataclasses.replace(nodrop, model=drop.model, ours=drop.ours) == drop
    (claim,) = table.claims
    assert claim.kind == "relative_reduction" and claim.variants == ("nin_dropout", "nin_no_dropout") and claim.threshold == 0.2


def test_ablation_rows_without_paper_numbers_render_a_dash(tmp_path):
    table = load_experiment("ablate_dropout").TABLE
    res = [vr("nin_dropout", [10.0]), vr("nin_no_dropout", [13.0])]
    res = [dataclasses.replace(r, method=table.variant(r.key).method) for r in res]
    md = R.write_table(dataclasses.replace(table, figure=None), res, tmp_path, prov=PROV)[0].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| **NIN without dropout**"))
    assert [c.strip() for c in row.strip("|").split("|")][1:5] == ["—", "13.00 (n=1, std n/a)", "—", "—"]
    assert "Dropout reduces test error by > 20 % relative: holds** (ours: 13.00 → 10.00, 23.1 % relative reduction)" in md


def test_cnn_trains_with_the_training_step():
    """The ConvNet goes through train.py's Caffe optimizer and compiled step unchanged; with the GAP
    head the classifier LR multiplier (0.1x) lands on the locally connected layer."""
    import optax

    from nin_repro.train import make_optimizer, make_train_steps

    recipe = dataclasses.replace(
        load_experiment("cifar10").RECIPE,
        dataset="synthetic",
        preprocess="standardize",
        model=conv_local_cifar10("gap", input_hw=(16, 16)).scaled(0.125),
        batch_size=8,
        base_lr=0.01,
    )
    model = build_model(recipe.model, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(params))
    x = jax.random.normal(jax.random.key(0), (16, 16, 16, 3))
    y = jnp.arange(16, dtype=jnp.int32) % 10

    def loss(p):
        logits = nnx.merge(graphdef, p)(x[:8], train=True, rngs=nnx.Rngs(dropout=0))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[:8]).mean()

    grads = nnx.to_pure_dict(jax.grad(loss)(params))
    tx = make_optimizer(recipe, params, model.classifier_path())
    step = make_train_steps(graphdef, tx, recipe, 1, 2)
    (new_params, _), metrics = step((params, tx.init(params)), x, y, jnp.arange(16), jax.random.key(1), 0, 0, jnp.float32(0.01))
    after = nnx.to_pure_dict(new_params)
    assert np.isfinite(float(metrics["loss"][0]))
    # Caffe update from zero momentum: w <- w - lr * mult * (g + wd * w).
    for path, mult in ((("local", "kernel"), 0.1), (("convs", 0, "kernel"), 1.0)):
        w0, g, w1 = (t[path[0]][path[1]] if len(path) == 2 else t[path[0]][path[1]][path[2]] for t in (before, grads, after))
        np.testing.assert_allclose(np.asarray(w1), w0 - 0.01 * mult * (np.asarray(g) + 1e-4 * w0), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["ablate_aux", "ablate_precision"])
def test_our_ablation_tables_change_one_thing(name):
    module = load_experiment(name)
    for table in (module.TABLE, module.DEMO_TABLE):
        base, other = (v.recipe for v in table.variants)
        assert not table.rows  # ours: no paper number to compare with
        assert dataclasses.replace(other, model=base.model, ours=base.ours) == base
        changed = {f.name for f in dataclasses.fields(base.model) if getattr(base.model, f.name) != getattr(other.model, f.name)}
        assert changed == ({"aux_after"} if name == "ablate_aux" else {"dtype"})
        assert len(other.ours) == len(base.ours) + 1


def test_bf16_compute_keeps_float32_parameters_and_logits():
    cfg = dataclasses.replace(load_experiment("ablate_precision").DEMO_TABLE.variants[1].recipe.model)
    assert cfg.dtype == "bfloat16"
    model = NIN(cfg, rngs=nnx.Rngs(0))
    assert {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}
    maps = model.class_maps(jnp.zeros((2, 28, 28, 1)))
    assert maps.dtype == jnp.bfloat16 and model(jnp.zeros((2, 28, 28, 1))).dtype == jnp.float32
