"""Options, --set overrides and the summary report."""

import pytest

from nin_repro.errors import UsageError
from nin_repro.recipe import load_experiment, smoke_width
from nin_repro.reproduce import Options, apply_options, apply_set

RECIPE = load_experiment("cifar10").RECIPE


def test_set_reaches_recipe_and_model_fields_with_their_types():
    r = apply_set(RECIPE, ("base_lr=0.05", "augment=true", "seeds=[4, 5]", "model.head=fc", "model.final_relu=no", "batch_size=64"))
    assert r.base_lr == 0.05 and r.augment is True and r.seeds == (4, 5) and r.batch_size == 64
    assert r.model.head == "fc" and r.model.final_relu is False
    assert RECIPE.base_lr == 0.1  # the experiment's recipe is untouched


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("nope=1", "no such recipe field"),
        ("model.nope=1", "no such model field"),
        ("base_lr=fast", "not a valid float"),
        ("augment=maybe", "not a valid bool"),
        ("base_lr", "expected key=value"),
        ("model.head=mlp", "unknown head"),
        ("a.b.c=1", "use a recipe field"),
    ],
)
def test_bad_set_is_a_usage_error(assignment, message):
    with pytest.raises(UsageError, match=message):
        apply_set(RECIPE, (assignment,))


def test_overrides_are_recorded():
    recipe, recorded = apply_options(RECIPE, Options(batch_size=256, overrides=("base_lr=0.05",)))
    assert recipe.batch_size == 256 and recipe.base_lr == 0.05
    assert recorded == ("batch_size=256", "base_lr=0.05")


def test_options_scale_epochs_and_seeds():
    recipe, recorded = apply_options(RECIPE, Options(seeds=5, epochs=10))
    assert recipe.seeds == (0, 1, 2, 3, 4) and recipe.epochs == 10 and recorded == ()


def test_smoke_keeps_at_least_16_channels():
    mnist = load_experiment("mnist").RECIPE
    recipe, _ = apply_options(mnist, Options(smoke=True))
    hidden = [w for b in recipe.model.blocks for w in b.widths][:-1]
    assert min(hidden) >= 16 and smoke_width(mnist) == pytest.approx(1 / 3)
    assert recipe.model.blocks[-1].widths[-1] == 10


def test_report_lists_every_row_of_the_smoke_run(smoke_cifar10):
    text = (smoke_cifar10["results"] / "smoke" / "README.md").read_text()
    for v in smoke_cifar10["table"]["variants"]:
        line = next(line for line in text.splitlines() if f"| {v['method']} |" in line)
        assert "smoke" in line and "[Table 1" in line and f"{v['errors_pct'][0]:.2f}" in line
    assert "Total wall time" in text


def test_recipe_zoo_is_the_caffe_solver_with_average_pool2():
    recipe, recorded = apply_options(RECIPE, Options(schedule="zoo"))
    assert recipe.schedule == "caffe" and [b.pool for b in recipe.model.blocks] == ["max", "avg", "none"]
    assert recorded == ("recipe=zoo (Caffe solver, average pool2)",)
    assert [b.pool for b in RECIPE.model.blocks] == ["max", "max", "none"]  # the paper's own net is untouched
    smoke, _ = apply_options(RECIPE, Options(schedule="zoo", smoke=True))
    assert smoke.model.blocks[1].pool == "avg"


def test_paper_schedule_keeps_the_bias_lr_at_each_drop_the_caffe_solver_does_not():
    spe = 390
    paper = RECIPE
    assert paper.lr_factor(200 * spe, spe) == pytest.approx(0.1) and paper.bias_lr_factor(200 * spe, spe) == 1.0
    caffe, _ = apply_options(RECIPE, Options(schedule="caffe"))
    assert caffe.bias_lr_factor(100_000, spe) == pytest.approx(0.1)


def test_set_coerces_by_the_declared_field_type():
    r = apply_set(RECIPE, ("epochs=1e3", "train_subset=1000", "warmup_epochs=2", "epochs=none"))
    assert r.epochs is None and r.train_subset == 1000 and isinstance(r.train_subset, int) and r.warmup_epochs == 2.0
    assert apply_set(RECIPE, ("epochs=1e3",)).epochs == 1000.0


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("batch_size=-5", "batch_size must be a whole number >= 1"),
        ("batch_size=0", "batch_size must be a whole number >= 1"),
        ("batch_size=1.5", "not a valid int"),
        ("epochs=-1", "epochs must be a finite number > 0"),
        ("epochs=nan", "epochs must be a finite number > 0"),
        ("warmup_epochs=inf", "warmup_epochs must be a finite number >= 0"),
        ("model.head_dropout=1.5", "dropout rate must be in"),
        ("dead_steps=0", "dead_steps must be a whole number >= 1"),
        ("seeds=[0,0]", "seeds must not repeat"),
        ("seeds=[]", "seeds must be a non-empty list"),
        ('seeds=["a"]', "seeds must be a non-empty list"),
        ("paper_phases=[]", "paper_phases must be a non-empty list"),
        ("paper_phases=[[0.25]]", "paper_phases must be a non-empty list"),
    ],
)
def test_every_field_is_checked_after_overrides(assignment, message):
    with pytest.raises(UsageError, match=message):
        apply_set(RECIPE, (assignment,))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(workdir="runs[1]"), "contains '\\[' or '\\]'"),
        (dict(overrides=("dataset=../../x",)), "unknown dataset '../../x'"),
    ],
)
def test_bad_folders_and_dataset_names_are_refused_before_training(tmp_path, monkeypatch, options, message):
    import nin_repro.reproduce as rep

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rep, "load_table_data", lambda *a: pytest.fail("data was loaded"))
    table = load_experiment("mnist").TABLE
    with pytest.raises(UsageError, match=message):
        rep.reproduce(table, Options(results_dir=tmp_path / "r", smoke=True, **{"workdir": tmp_path / "w", **options}))


@pytest.mark.parametrize(
    "options, label",
    [
        (Options(overrides=("paper_phases=[[0.25, 1.0]]",)), "shortened: not the table's recipe: paper_phases=((0.25, 1.0),)"),
        (Options(schedule="zoo"), "shortened: not the table's recipe: model.blocks[1].pool=avg, schedule=caffe"),
        (Options(batch_size=64, overrides=("model.final_relu=false",)), "shortened: not the table's recipe: model.final_relu=False, batch_size=64"),
        (Options(seeds=5), None),  # more seeds of the same recipe: still the table's recipe
    ],
)
def test_a_run_that_changes_the_recipe_is_never_a_full_row(options, label):
    from nin_repro.reproduce import shortened_label

    recipe, _ = apply_options(RECIPE, options)
    assert shortened_label(recipe, recipe.schedule_epochs(390), False, RECIPE) == label
