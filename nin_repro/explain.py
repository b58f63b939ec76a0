"""The analysis commands (`figure4`, `cam`, `gap-claims`, `plot`): find a saved run (or train a
demo-scale one and say so), measure with ``analysis``, draw with ``figures``, and write
``<results>/<name>.md`` + ``.json`` (+ ``.png``) atomically. A smoke model's outputs go to
``<results>/smoke/`` and carry the caption "untrained smoke model — not evidence".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from nin_repro import analysis, atomic, figures
from nin_repro.errors import UsageError
from nin_repro.provenance import provenance
from nin_repro.recipe import load_experiment
from nin_repro.report import write_report

# Saved runs each command looks for in --workdir, best first: the paper-scale tables, then the
# demo-scale models of experiments/analysis.py (trained on demand).
GAP_RUNS = (("cifar10", "nin_dropout"), ("ablate-gap", "nin_gap"), ("svhn", "nin_dropout"), ("mnist", "nin_dropout"), ("demo", "nin_digits5k"), ("analysis", "gap"))
CAM_RUNS = (("analysis", "gap_dense"),)
PAIR_RUNS = ((("ablate-gap", "nin_gap"), ("ablate-gap", "nin_fc")), (("analysis", "gap"), ("analysis", "fc")))

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the analysed model and its data come from."""

    workdir: Path = Path("runs")
    data_dir: Path | None = None
    cache_dir: Path | None = None
    download: bool = True
    epochs: float | None = None  # for a model trained on demand (None: the demo's 8 epochs)


def _run_dir(workdir: Path, table: str, variant: str, seed: int = 0) -> Path:
    return Path(workdir) / table / variant / f"seed_{seed}"


def _finished(run_dir: Path) -> bool:
    return (run_dir / "run.json").is_file() and (run_dir / "params").is_dir()


def _train_demo(variant: str, src: Source, say: Say) -> Path:
    from nin_repro.reproduce import Options, train_variant

    table = load_experiment("analysis").TABLE
    say(f"no saved run found in {src.workdir}: training a demo-scale model ({table.variant(variant).method}, 5k real digits, about 30 s on 2 CPU cores)")
    return train_variant(table, variant, Options(workdir=src.workdir, epochs=src.epochs))


def find_or_train(run: Path | None, candidates, src: Source, say: Say) -> analysis.Loaded:
    """The run to analyse: ``run`` if given, else the first saved candidate, else a demo-scale
    model trained now (its variant is the last candidate's)."""
    if run is not None:
        return analysis.load(run)
    for table, variant in candidates:
        d = _run_dir(src.workdir, table, variant)
        if _finished(d):
            say(f"using the saved run {d}")
            return analysis.load(d)
    return analysis.load(_train_demo(candidates[-1][1], src, say))


def find_or_train_pair(src: Source, say: Say) -> tuple[analysis.Loaded, analysis.Loaded]:
    """GAP and FC runs on the same trunk: the first pair of ``PAIR_RUNS`` saved in full, else
    the demo-scale pair (each trained now if missing)."""
    pair = next((p for p in PAIR_RUNS if all(_finished(_run_dir(src.workdir, *x)) for x in p)), PAIR_RUNS[-1])
    gap, fc = (find_or_train(None, (x,), src, say) for x in pair)
    return gap, fc


def dataset_of(run: analysis.Loaded, src: Source):
    """The raw (uint8) dataset the run was trained on."""
    from nin_repro.reproduce import Options, load_table_data

    return load_table_data(run.recipe, Options(smoke=run.smoke, data_dir=src.data_dir, cache_dir=src.cache_dir, download=src.download))


def class_names(run: analysis.Loaded) -> tuple[str, ...]:
    try:
        names = load_experiment(run.record["table"].replace("-", "_")).TABLE.class_names
    except (UsageError, KeyError):
        names = ()
    k = run.recipe.model.num_classes
    return tuple(names) if len(names) == k else tuple(str(c) for c in range(k))


def out_dir(results_dir: Path, run: analysis.Loaded) -> Path:
    return Path(results_dir) / ("smoke" if run.smoke else "")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _write(out: Path, name: str, md_lines: list[str], record: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{name}.md", out / f"{name}.json"
    atomic.write_json(js, {"analysis": name, **record, "provenance": provenance()})
    atomic.write_text(md, "\n".join(md_lines).rstrip() + "\n")
    write_report(out)  # the results summary links every analysis
    return md, js


def _model_line(run: analysis.Loaded) -> str:
    err = run.record.get("result", {}).get("test_error")
    return f"Model: `{run.run_dir}` ({analysis.caption(run)}; recorded test error {_pct(err)} %)."


def _localization_md(loc: analysis.Localization | None, why_not: str) -> list[str]:
    if loc is None:
        return ["", f"Localization: not measured ({why_not})."]
    return [
        "",
        f"Localization: {loc.num_images} test digits pasted at random positions on a {loc.canvas}x{loc.canvas} black canvas "
        "(no retraining: GAP takes any input size); a hit when the peak of the class's map, upsampled to the canvas, lies in the digit's ink box.",
        "",
        "| Pointing | Accuracy (%) |",
        "|---|---|",
        f"| peak of the predicted class's map | {100 * loc.pointing_predicted:.1f} |",
        f"| peak of the true class's map | {100 * loc.pointing_true:.1f} |",
        f"| baseline: always the canvas centre | {100 * loc.centre_baseline:.1f} |",
        "",
        f"Classification error on the canvases: {100 * loc.canvas_error:.2f} %.",
    ]


def _maybe_localize(run: analysis.Loaded, ds, canvas: int | None, n: int) -> tuple[analysis.Localization | None, str]:
    if run.recipe.model.in_channels != 1:
        return None, "needs digits with known positions: pass a digit model, e.g. --run runs/demo/nin_digits5k/seed_0"
    size = canvas or 2 * run.recipe.model.input_hw[0]
    return analysis.localization(run, ds.x_test[:n], ds.y_test[:n], size), ""


# --------------------------------------------------------------------------- figure4


def figure4(run: analysis.Loaded, ds, results_dir: Path, *, per_class: int = 1, canvas: int | None = None, localize: int = 1000, keep: float = 0.10) -> tuple[Path, Path, Path]:
    """The paper's Figure 4 and the numbers it suggests."""
    x_test = run.pre.apply(ds.x_test)
    maps, logits = analysis.class_activation_maps(run, x_test)
    pred = logits.argmax(-1)
    names = class_names(run)
    k = min(10, len(names))  # CIFAR-100: the first 10 classes' images and maps
    pick = analysis.first_per_class(ds.y_test, per_class, k)
    if pick.size == 0:
        raise UsageError("figure4: the test set has no image of the first classes")
    hw = tuple(run.recipe.model.input_hw)
    shown = analysis.percentile_mask(analysis.upsample(np.maximum(maps[pick][..., :k], 0.0), hw, analysis.map_geometry(run.recipe.model)), keep)
    out = out_dir(results_dir, run)
    cap = analysis.caption(run)
    png = figures.draw_figure4(
        ds.x_test[pick],
        shown,
        ds.y_test[pick],
        pred[pick],
        names[:k],
        out / "figure4.png",
        "Figure 4: class maps of the last mlpconv layer (GAP input)",
        cap[0].upper() + cap[1:] + ".",
    )
    agreement = analysis.strongest_map_agreement(maps, logits)
    error = float(np.mean(pred != ds.y_test))
    loc, why_not = _maybe_localize(run, ds, canvas, localize)
    lines = [
        "# Figure 4: the class maps of global average pooling",
        "",
        f"> {cap[0].upper() + cap[1:]}.",
        "",
        _model_line(run),
        "",
        "![Figure 4](figure4.png)",
        "",
        f"Each test image (the first {per_class} of each class) beside the maps of the last layer for the classes shown, ReLU'd and upsampled "
        f"bilinearly to {hw[0]}x{hw[1]}; only each image's top {100 * keep:g} % of activations are drawn; the true class's map is framed.",
        "",
        f"On all {len(ds.y_test)} test images: test error {100 * error:.2f} %; the class whose map has the highest peak is the predicted "
        f"class (highest mean) for {100 * agreement:.1f} % of images.",
    ]
    lines += _localization_md(loc, why_not)
    record = {
        "run": str(run.run_dir),
        "caption": cap,
        "test_error": error,
        "strongest_map_agreement": agreement,
        "localization": dataclasses.asdict(loc) if loc else None,
        "figure": "figure4.png",
    }
    md, js = _write(out, "figure4", lines, record)
    return md, js, png


# --------------------------------------------------------------------------- cam


def cam(run: analysis.Loaded, ds, results_dir: Path, *, images: int = 6, canvas: int | None = None, localize: int = 1000) -> tuple[Path, Path, Path]:
    """Class activation maps (Zhou et al. 2016) of top-1 and top-2 classes, with the check that
    the CAMs' means give back the logits."""
    x_test = run.pre.apply(ds.x_test)
    names = class_names(run)
    pick = analysis.first_per_class(ds.y_test, 1, len(names))[:images]
    maps, logits = analysis.class_activation_maps(run, x_test[pick])
    bias = np.zeros(len(names), np.float32) if run.head == "gap" else np.asarray(run.model.dense.bias[...])
    identity_err = float(np.max(np.abs(maps.mean(axis=(1, 2)) + bias - logits)))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    hw = tuple(run.recipe.model.input_hw)
    out = out_dir(results_dir, run)
    cap = analysis.caption(run)
    png = figures.draw_cam(
        ds.x_test[pick],
        analysis.upsample(maps, hw, analysis.map_geometry(run.recipe.model)),
        probs,
        names,
        out / "cam.png",
        f"Class activation maps ({run.head} head)",
        cap[0].upper() + cap[1:] + ".",
    )
    loc, why_not = _maybe_localize(run, ds, canvas, localize)
    formula = "CAM_c = f_c, the last layer's map of class c (pure GAP)" if run.head == "gap" else "CAM_c = sum_k w_kc f_k (GAP -> Dense)"
    lines = [
        "# Class activation maps",
        "",
        f"> {cap[0].upper() + cap[1:]}.",
        "",
        _model_line(run),
        "",
        "![Class activation maps](cam.png)",
        "",
        f"{formula}, upsampled bilinearly to {hw[0]}x{hw[1]} and overlaid on the image; each map scaled to its own range. "
        f"Check: mean_hw(CAM_c) + b_c equals logit_c to {identity_err:.1e} (max |difference| over the images shown).",
    ]
    lines += _localization_md(loc, why_not)
    record = {
        "run": str(run.run_dir),
        "caption": cap,
        "head": run.head,
        "cam_identity_max_abs_err": identity_err,
        "localization": dataclasses.asdict(loc) if loc else None,
        "figure": "cam.png",
    }
    md, js = _write(out, "cam", lines, record)
    return md, js, png


# --------------------------------------------------------------------------- gap-claims

SIZES = (24, 28, 32, 40, 48)


def gap_claims(gap: analysis.Loaded, fc: analysis.Loaded, ds, results_dir: Path, *, sizes: tuple[int, ...] = SIZES, max_shift: int = 4) -> tuple[Path, Path]:
    """GAP head vs FC head on the same trunk: parameters, input sizes, translations, overfitting."""
    same_trunk = getattr(gap.recipe.model, "blocks", None) == getattr(fc.recipe.model, "blocks", None)
    train_size = gap.recipe.model.input_hw[0]
    sizes = tuple(sorted(set(sizes) | {train_size}))
    x_train, x_test = gap.pre.apply(ds.x_train), gap.pre.apply(ds.x_test)
    if fc.pre.kind != gap.pre.kind:
        raise UsageError(f"gap-claims compares two heads on the same data: the runs use {gap.pre.kind} and {fc.pre.kind} preprocessing")
    cols = {}
    for name, run in (("GAP", gap), ("FC", fc)):
        same_pre = run.record.get("preprocess", {}).get("sha256") == gap.record.get("preprocess", {}).get("sha256")
        x_tr, x_te = (x_train, x_test) if same_pre else (run.pre.apply(ds.x_train), run.pre.apply(ds.x_test))
        train_err, test_err, diff = analysis.train_test_gap(run, x_tr, ds.y_train, x_te, ds.y_test)
        cols[name] = {
            "run": str(run.run_dir),
            "head": run.head,
            "head_params": analysis.head_params(run),
            "inference_params": analysis.inference_params(run),
            "sizes": {str(s): e for s, e in analysis.size_sweep(run, x_te, ds.y_test, sizes).items()},
            "translations": {str(k): e for k, e in analysis.translation_sweep(run, x_te, ds.y_test, max_shift).items()},
            "train_error": train_err,
            "test_error": test_err,
            "train_test_gap": diff,
        }
    cap = analysis.caption(gap)
    g, f = cols["GAP"], cols["FC"]
    lines = [
        "# GAP vs FC: the claims of global average pooling, measured",
        "",
        f"> {cap[0].upper() + cap[1:]}.",
        "",
        f"GAP model: `{gap.run_dir}`; FC model: `{fc.run_dir}` ({'the same trunk' if same_trunk else 'WARNING: different trunks'}). "
        f"Test set: {len(ds.y_test)} images; training set: {len(ds.y_train)} images.",
        "",
        "| Measure | GAP | FC |",
        "|---|---|---|",
        f"| Head parameters | {g['head_params']:,} | {f['head_params']:,} |",
        f"| Inference parameters (total) | {g['inference_params']:,} | {f['inference_params']:,} |",
    ]
    for s in sizes:
        what = f"Test error (%) at {s} px" + (" (training size)" if s == train_size else " (resized, no retraining)")
        cells = [_pct(c["sizes"][str(s)]) if c["sizes"][str(s)] is not None else f"n/a (built for {train_size} px)" for c in (g, f)]
        lines.append(f"| {what} | {cells[0]} | {cells[1]} |")
    for k in range(1, max_shift + 1):
        lines.append(f"| Test error (%) shifted {k} px (mean of 4 directions, fill 0) | {_pct(g['translations'][str(k)])} | {_pct(f['translations'][str(k)])} |")
    lines += [
        f"| Training error (%), eval mode, all training images | {_pct(g['train_error'])} | {_pct(f['train_error'])} |",
        f"| Train–test gap (test − train, pp) | {100 * g['train_test_gap']:+.2f} | {100 * f['train_test_gap']:+.2f} |",
        "",
        "Resizing is bilinear on the preprocessed images; shifts move the preprocessed image and fill the border with 0 "
        "(the mean in preprocessed space). A network runs at another size only if nothing in it is built for one size: "
        "an FC (or locally connected) layer is, the GAP head is not.",
    ]
    record = {"caption": cap, "same_trunk": same_trunk, "training_size": train_size, "gap": g, "fc": f}
    return _write(Path(results_dir) / ("smoke" if gap.smoke else ""), "gap_claims", lines, record)


# --------------------------------------------------------------------------- plot


def run_label(run_dir: Path) -> str:
    import json

    try:
        r = json.loads((Path(run_dir) / "run.json").read_text())
        return f"{r['table']}/{r['variant']} seed {r['seed']}" + (" (smoke)" if r.get("smoke") else "")
    except (OSError, ValueError, KeyError):
        return str(run_dir)


def plot(run_dirs: list[Path], out_png: Path) -> Path:
    for d in run_dirs:
        if not (Path(d) / "metrics.jsonl").is_file():
            raise UsageError(f"{d} has no metrics.jsonl: pass run folders such as runs/demo/nin_digits5k/seed_0")
    for d in run_dirs:
        if not figures.read_metrics(d):
            raise UsageError(f"{Path(d) / 'metrics.jsonl'} has no usable epoch record (empty or damaged): nothing to plot")
    labels = [run_label(d) for d in run_dirs]
    caption = figures.SMOKE_CAPTION if any(label.endswith("(smoke)") for label in labels) else ""
    png = figures.plot_runs(run_dirs, labels, out_png, caption)
    # What the figure shows, beside it: the runs (folders, labels, epochs drawn) and where it was made.
    drawn = [{"run_dir": str(d), "label": label, "epochs": len(figures.read_metrics(d))} for d, label in zip(run_dirs, labels)]
    what = "training curves of " + "; ".join(labels)
    atomic.write_json(Path(png).with_suffix(".json"), {"analysis": "curves", "caption": what, "figure": Path(png).name, "runs": drawn, "provenance": provenance()})
    return png
