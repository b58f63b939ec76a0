"""Recipes as data: what a table row is trained with, and the paper's rows it is compared to.

The experiment files in ``experiments/`` (installed as ``nin_repro.experiments``) build these
objects; everything else reads them. A field the paper does not fix is listed in
``Recipe.ours`` so the table row can name it as our choice.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable

from nin_repro.errors import UsageError
from nin_repro.models import ModelConfig
from nin_repro.registry import load_experiment  # noqa: F401  (where it always was; lives in registry)

SCHEDULES = ("paper", "caffe", "plateau", "pylearn2")


@dataclasses.dataclass(frozen=True)
class ValidationProtocol:
    """How the maxout authors chose a run's length (pylearn2 ``*_valid.yaml`` and the README beside
    them; `--recipe protocol`, nin_repro.protocol): train on the first ``train_size`` of ``of_total``
    training images, evaluate the rest after every epoch, stop after ``patience`` epochs in a row
    without a new lowest validation error (``MonitorBased`` with ``prop_decrease`` 0, ``N`` =
    patience), then train a fresh network on all the training images for the best epoch's count
    (``then="retrain"``). A training set of another size (a smoke run, the shipped digits) holds
    out the same fraction [ours]. ``then="continue"`` (mnist_continued.yaml) instead continues the
    best phase-1 network on all the training images without dropout, at the LR and momentum of its
    best epoch, until the held-out images' mean NLL is at or below that network's on the images it
    trained on. ``then="resume"`` (svhn.yaml then svhn2.yaml) continues the best phase-1 network at
    the recipe's ``pylearn2_phase2`` LR and momentum, with dropout, early-stopped as phase 1, and
    reports its best epoch's network. ``max_epochs``: the cap of each phase (the yamls have none) [ours]."""

    patience: int
    max_epochs: int
    train_size: int = 0
    of_total: int = 0
    # "first": the first train_size of of_total training images train, the rest validate; "dataset":
    # the dataset's own validation split (SVHN's, Dataset.x_val) validates, every training image trains.
    split: str = "first"
    then: str = "retrain"
    source: str = ""  # the yaml and keys it comes from

    def problems(self) -> list[str]:
        out = []
        if self.split not in ("first", "dataset"):
            out.append(f"protocol.split must be 'first' or 'dataset', got {self.split!r}")
        if self.split == "first" and not (0 < self.train_size < self.of_total):
            out.append(f"protocol.train_size must be in (0, of_total), got {self.train_size} of {self.of_total}")
        if self.patience < 1 or self.max_epochs < 1:
            out.append(f"protocol.patience and protocol.max_epochs must be >= 1, got {self.patience}, {self.max_epochs}")
        if self.then not in ("retrain", "continue", "resume"):
            out.append(f"protocol.then must be 'retrain', 'continue' or 'resume', got {self.then!r}")
        return out


RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """Everything a table row trains with. The fields without a default are the paper's (or our)
    choices for that table and are written in its experiment file; the defaults are checks and
    options that are not part of any paper recipe."""

    dataset: str  # name for nin_repro.data.load_dataset ("cifar10", "mnist", "digits5k", "synthetic")
    preprocess: str  # "gcn_zca" | "scale01" | "standardize" | ...
    model: ModelConfig  # NINConfig, or ConvNetConfig for the Sec. 4.6 CNN
    augment: bool = False  # +-4 px zero-padded random crop and horizontal flip (after preprocessing)
    augment_flip: bool = True  # digits must not be mirrored
    batch_size: int
    # Optimizer (docs/paper-notes.md, "Training recipe"): "sgd" is Caffe's SGD (momentum inside the
    # update, decay on weights only, per-layer LR multipliers); "adam" is ours.
    optimizer: str
    base_lr: float
    momentum: float
    weight_decay: float
    bias_lr_mult: float
    # Whether an LR drop of the "paper" schedule also divides the biases' LR. The author's README
    # divides only epsW at each drop; epsB stays (docs/paper-notes.md, "Training recipe"). The Caffe
    # solver and the plateau rule scale every LR.
    bias_lr_drops: bool
    classifier_lr_mult: float  # the layer producing class scores (cccp6)
    # Learning-rate schedule: "paper" (paper_phases), "caffe" (the caffe_* solver), "plateau",
    # "pylearn2" (the maxout baselines: lr_decay, momentum_adjust, max_epochs; nin_repro.baselines).
    schedule: str
    paper_phases: tuple[tuple[float, float], ...] | None = None  # (epochs, LR factor); needed by "paper"
    caffe_step_iters: int | None = None  # needed by "caffe" (also by --recipe caffe / zoo)
    caffe_max_iters: int | None = None
    caffe_gamma: float | None = None
    # The paper's text rule (--recipe plateau): LR /10 when training accuracy stops improving, twice.
    plateau_patience: int = 10  # epochs without training-accuracy gain before LR /10 [ours]
    plateau_min_delta: float = 0.001  # a gain smaller than this (absolute accuracy) is no gain [ours]
    plateau_drops: int = 2  # the paper divides by 10 twice: final LR = 1/100
    plateau_max_epochs: float = 300  # [ours]
    # "pylearn2" only: ("linear_epoch", start, saturate, decay_factor) = LinearDecayOverEpoch, or
    # ("exponential", decay_factor, min_lr) = ExponentialDecay; MomentumAdjustor (final, start,
    # saturate), () = fixed momentum; the run's length (the yaml's EpochCounter or README epoch).
    lr_decay: tuple = ()
    momentum_adjust: tuple[float, ...] = ()
    max_epochs: float | None = None
    # A second phase after max_epochs (svhn2.yaml resuming svhn.yaml's model): (epochs, learning
    # rate, momentum), both fixed, the velocity restarted from 0; () = none (nin_repro.baselines).
    pylearn2_phase2: tuple = ()
    warmup_epochs: float = 0.0  # linear warm-up [ours]; 0 in the paper recipe
    epochs: float | None = None  # None = the schedule's own length; otherwise scaled to this
    seeds: tuple[int, ...]
    # The random-number generator of every key (init, data order, dropout, augmentation). The
    # default is JAX's threefry; "rbg" / "unsafe_rbg" are faster on GPUs for the ~19M dropout
    # uniforms of a batch-512 step but give other random streams [ours, a recorded option]. On a CPU
    # threefry stays: rbg measured no faster there (CIFAR-10 NIN, batch 128, 2 shared cores, steps
    # interleaved in one process: 28.9 vs 33.4 img/s best step; MNIST 109 vs 139).
    rng_impl: str = "threefry2x32"
    eval_batch_size: int = 500
    # Stall checks (nin_repro.health; defaults from `nin-repro init-study`): a seed has stalled when
    # at least one class map is dead (score 0 for every example of the batch) for ``dead_steps``
    # consecutive steps, or when its epoch-mean training loss is still within ``stall_tolerance``
    # of ln C after ``stall_epochs`` epochs. A stalled seed is retried from a fresh initialisation,
    # ``attempts`` tries in all. The defaults, from the MNIST recipe on 4,000 real digits (GPU
    # exploration, 8 seeds x 15 variants; results/init-study.md; docs/paper-notes.md, "The dead last
    # layer"): seeds that went on to learn had a class map dead for at most 155 steps in a row;
    # the slowest seed that learned left ln C in epoch 6 (the study ran with E = 3 and flagged it, so
    # E is 8); seeds that never learned had a map dead until the end or sat at ln C throughout.
    dead_steps: int = 200
    stall_epochs: float = 8.0
    stall_tolerance: float = 1e-3
    attempts: int = 3
    ours: tuple[str, ...] = ()  # human-readable list of choices/departures that are ours
    # Shortened runs (subset, smoke) say so here; the table row shows it.
    train_subset: int | None = None
    # The authors' validation protocol of a baseline row (data; None for rows without one), and
    # whether this run follows it (`--recipe protocol`) instead of the row's fixed epoch count.
    protocol: ValidationProtocol | None = None
    run_protocol: bool = False

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown recipe schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        problems = self.problems()
        if problems:
            raise UsageError(f"invalid recipe: {'; '.join(problems)} (fix the value given with --set or the option)")

    def problems(self) -> list[str]:
        """Every field outside its range, in words (empty when the recipe is valid)."""

        def finite(x) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        out = []
        needed = {"paper": ("paper_phases",), "caffe": ("caffe_step_iters", "caffe_max_iters", "caffe_gamma"), "plateau": (), "pylearn2": ("max_epochs",)}[self.schedule]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            return [f"the {self.schedule} schedule needs {', '.join(missing)}, which this table's experiment file does not give"]
        if self.rng_impl not in RNG_IMPLS:
            out.append(f"rng_impl must be one of {', '.join(RNG_IMPLS)}, got {self.rng_impl!r}")
        if self.optimizer not in ("sgd", "adam"):
            out.append(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        ints = ("batch_size", "eval_batch_size", "dead_steps", "attempts", "plateau_patience")
        for name in ints + (("caffe_step_iters", "caffe_max_iters") if self.schedule == "caffe" else ()):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                out.append(f"{name} must be a whole number >= 1, got {v!r}")
        for name in ("base_lr", "weight_decay", "warmup_epochs", "bias_lr_mult", "classifier_lr_mult", "plateau_min_delta", "stall_tolerance"):
            v = getattr(self, name)
            if not finite(v) or v < 0:
                out.append(f"{name} must be a finite number >= 0, got {v!r}")
        if not finite(self.momentum) or not 0 <= self.momentum < 1:
            out.append(f"momentum must be in [0, 1), got {self.momentum!r}")
        for name in ("stall_epochs", "plateau_max_epochs") + (("caffe_gamma",) if self.schedule == "caffe" else ()):
            v = getattr(self, name)
            if not finite(v) or v <= 0:
                out.append(f"{name} must be a finite number > 0, got {v!r}")
        if self.epochs is not None and (not finite(self.epochs) or self.epochs <= 0):
            out.append(f"epochs must be a finite number > 0, got {self.epochs!r}")
        if not self.seeds or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in self.seeds):
            out.append(f"seeds must be a non-empty list of whole numbers >= 0, got {list(self.seeds)!r}")
        elif len(set(self.seeds)) != len(self.seeds):
            out.append(f"seeds must not repeat, got {list(self.seeds)!r}")
        if self.schedule == "paper" and not (
            self.paper_phases and all(isinstance(ph, tuple) and len(ph) == 2 and finite(ph[0]) and ph[0] > 0 and finite(ph[1]) and ph[1] >= 0 for ph in self.paper_phases)
        ):
            out.append(f"paper_phases must be a non-empty list of [epochs > 0, LR factor >= 0], got {self.paper_phases!r}")
        if self.schedule == "pylearn2":
            out += self._pylearn2_problems()
        if self.train_subset is not None and (not isinstance(self.train_subset, int) or self.train_subset < 1):
            out.append(f"train_subset must be a whole number >= 1, got {self.train_subset!r}")
        if self.protocol is not None:
            out += self.protocol.problems()
        if self.run_protocol and (self.protocol is None or self.schedule != "pylearn2"):
            out.append("run_protocol needs a pylearn2 recipe with a validation protocol (the maxout rows)")
        elif self.run_protocol and self.protocol.then == "resume" and not self.pylearn2_phase2:
            out.append("a protocol that resumes (svhn2.yaml) takes its LR and momentum from pylearn2_phase2, which is empty")
        return out

    def _pylearn2_problems(self) -> list[str]:
        from nin_repro.baselines import lr_decay_problem, phase2_problem

        out = [p for p in (lr_decay_problem(self.lr_decay), phase2_problem(self.pylearn2_phase2)) if p]
        if self.momentum_adjust and not (len(self.momentum_adjust) == 3 and 0 <= self.momentum_adjust[0] < 1 and 0 <= self.momentum_adjust[1] <= self.momentum_adjust[2]):
            out.append(f"momentum_adjust must be (final momentum in [0, 1), start, saturate >= start), got {list(self.momentum_adjust)!r}")
        if not (isinstance(self.max_epochs, (int, float)) and self.max_epochs > 0):
            out.append(f"max_epochs must be a number > 0, got {self.max_epochs!r}")
        return out

    @property
    def seeds_pick_their_length(self) -> bool:
        """The plateau rule and --recipe protocol stop each seed at its own epoch, so its seeds
        cannot share one program: they train one at a time."""
        return self.schedule == "plateau" or self.run_protocol

    def schedule_epochs(self, steps_per_epoch: int) -> float:
        """Length of the schedule as published (before --epochs scaling)."""
        if self.run_protocol:  # an estimate: phase 1 to its cap, then the row's own count (what the authors' next phase took)
            return float(self.protocol.max_epochs + self.max_epochs)
        if self.schedule == "pylearn2":
            return float(self.max_epochs) + (float(self.pylearn2_phase2[0]) if self.pylearn2_phase2 else 0.0)
        if self.schedule == "paper":
            return float(sum(e for e, _ in self.paper_phases))
        if self.schedule == "caffe":
            return self.caffe_max_iters / steps_per_epoch
        return float(self.plateau_max_epochs)

    def total_epochs(self, steps_per_epoch: int) -> float:
        return float(self.epochs) if self.epochs is not None else self.schedule_epochs(steps_per_epoch)

    def total_steps(self, steps_per_epoch: int) -> int:
        return max(1, math.ceil(self.total_epochs(steps_per_epoch) * steps_per_epoch))

    def lr_factor(self, step: int, steps_per_epoch: int) -> float:
        """LR multiplier at ``step`` for the step-based schedules (paper, caffe), scaled
        proportionally when --epochs shortens or lengthens the run; includes warm-up."""
        scale = self.total_epochs(steps_per_epoch) / self.schedule_epochs(steps_per_epoch)
        epoch = step / steps_per_epoch
        factor = 1.0
        if self.schedule == "paper":
            end = 0.0
            for length, f in self.paper_phases:
                end += length * scale
                factor = f
                if epoch < end:
                    break
        elif self.schedule == "caffe":
            boundary = self.caffe_step_iters * scale
            factor = self.caffe_gamma if step >= boundary else 1.0
        elif self.schedule == "pylearn2":
            from nin_repro.baselines import lr_factor_at

            factor = lr_factor_at(self.lr_decay, step, steps_per_epoch, scale, self.base_lr, self.pylearn2_phase2, self.max_epochs)
        return factor * self.warmup_factor(step, steps_per_epoch)

    def lr_boundaries(self, steps_per_epoch: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """``lr_factor`` without warm-up as a step function: (the first step of each later piece,
        the factor of every piece), in whole steps, so the device compares integers
        (``train.lr_schedule``). ``lr_factor`` stays the definition; a test checks they agree."""
        scale = self.total_epochs(steps_per_epoch) / self.schedule_epochs(steps_per_epoch)

        def first_step_at_or_after(epoch: float) -> int:  # the smallest s with s / spe >= epoch
            s = max(0, math.ceil(epoch * steps_per_epoch))
            while s > 0 and (s - 1) / steps_per_epoch >= epoch:
                s -= 1
            while s / steps_per_epoch < epoch:
                s += 1
            return s

        if self.schedule == "paper":
            ends = list(itertools.accumulate(length * scale for length, _ in self.paper_phases))[:-1]
            return tuple(first_step_at_or_after(e) for e in ends), tuple(float(f) for _, f in self.paper_phases)
        if self.schedule == "caffe":
            return (math.ceil(self.caffe_step_iters * scale),), (1.0, float(self.caffe_gamma))
        return (), (1.0,)

    def warmup_factor(self, step: int, steps_per_epoch: int) -> float:
        warm = self.warmup_epochs * steps_per_epoch
        return (step + 1) / warm if warm > 0 and step < warm else 1.0

    def bias_lr_factor(self, step: int, steps_per_epoch: int) -> float:
        """LR multiplier of the biases: the weights' one, except that the paper schedule keeps
        the biases' LR when ``bias_lr_drops`` is off (as the author's README does)."""
        if self.schedule == "paper" and not self.bias_lr_drops:
            return self.warmup_factor(step, steps_per_epoch)
        return self.lr_factor(step, steps_per_epoch)

    @property
    def is_paper_length(self) -> bool:
        return self.epochs is None and self.train_subset is None


# --smoke checks the pipeline, not the recipe: the shared rewrite below, which an experiment file
# may replace with its own (Table.smoke). The row lists every field it changed (reproduce.shortened_label).
SMOKE_WIDTH = 0.125
SMOKE_MIN_CHANNELS = 16  # narrower layers (with dropout 0.5) often collapse within the smoke steps
# 4 epochs at batch 32 learn more than 8 at batch 64 in less than half the time on a CPU: half the
# images, as many updates (per image, batch 32 and 64 cost about the same here). Seed 0, first row, test error % at the end (2-core CPU):
# cifar10 3.4 (was 5.8), svhn 4.6 (2.4), mnist 33.0 (30.0), cifar100 72.6 (46.2; 4 epochs at
# batch 64: 99.6); training 8 / 12 / 6 / 14 s (was 15 / 20 / 11 / 32 s).
SMOKE_EPOCHS = 4
SMOKE_BATCH = 32
SMOKE_EVAL_BATCH = 128
SMOKE_SEEDS = (0,)


# The baseline rows' networks cost far more per smoke step than NIN's (maxout: 8x8 kernels on 33x33
# maps, ~170 s for 8 epochs at 16 channels on 2 shared cores): their smoke is narrower and shorter.
SMOKE_BASELINE_MIN_CHANNELS = 8
SMOKE_BASELINE_EPOCHS = 2


def _is_baseline(recipe: Recipe) -> bool:
    from nin_repro.baselines import BASELINE_CONFIGS

    return isinstance(recipe.model, BASELINE_CONFIGS)


def smoke_width(recipe: Recipe) -> float:
    if _is_baseline(recipe):
        return max(SMOKE_WIDTH / 2, SMOKE_BASELINE_MIN_CHANNELS / min(recipe.model.hidden_widths()))
    return max(SMOKE_WIDTH, SMOKE_MIN_CHANNELS / min(recipe.model.hidden_widths()))


def smoke_recipe(recipe: Recipe) -> Recipe:
    """The default --smoke rewrite: tiny widths, SMOKE_EPOCHS epochs (the baseline rows: 2), one seed. Tiny widths with N(0, 0.05),
    SGD and ZCA fitted on 1.5k images (fewer than its 3072 dimensions) learn nothing in 200 steps,
    so smoke also uses He init, no ReLU on the class maps (with tiny widths the last layer
    otherwise dies within the few steps), standardized pixels and Adam."""
    return dataclasses.replace(
        recipe,
        model=recipe.model.scaled(smoke_width(recipe)).with_he_init(final_relu=False),
        epochs=float(SMOKE_BASELINE_EPOCHS if _is_baseline(recipe) else SMOKE_EPOCHS),
        batch_size=SMOKE_BATCH,
        eval_batch_size=SMOKE_EVAL_BATCH,
        seeds=SMOKE_SEEDS,
        preprocess="standardize",
        optimizer="adam",
        base_lr=0.003,
        classifier_lr_mult=1.0,
    )


@dataclasses.dataclass(frozen=True)
class PaperRow:
    method: str
    error: float  # test error, %
    citation: str  # e.g. "[11] Zeiler & Fergus 2013"
    variant: str | None = None  # key of our Variant that reproduces this row


@dataclasses.dataclass(frozen=True)
class Variant:
    key: str
    method: str
    recipe: Recipe
    # A baseline of the paper's table (conv. maxout, stochastic pooling) re-run in our harness: the
    # table command trains it with --baselines (or when --rows names it); reproduce-all by default.
    baseline: bool = False


CLAIM_KINDS = ("order", "relative_reduction")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A statement of the paper about several rows, checked on our mean test errors.

    * ``kind="order"``: ``variants`` from lowest to highest error, e.g. ("gap", "fc_dropout", "fc")
      for "GAP < FC + Dropout < FC"; holds when every mean is strictly below the next.
    * ``kind="relative_reduction"``: ``variants = (with, without)``; holds when
      (without - with) / without > ``threshold`` (a fraction: 0.2 = 20 %).
    """

    kind: str
    variants: tuple[str, ...]
    label: str  # short form shown under the table, e.g. "GAP < FC + Dropout < FC"
    wording: str  # what the paper says, in its words or marked as a paraphrase
    source: str = ""  # where the paper says it, with confidence, e.g. "Sec. 4.6 [R]"
    threshold: float = 0.0  # relative_reduction only

    def __post_init__(self):
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"unknown claim kind {self.kind!r}: choose one of {', '.join(CLAIM_KINDS)}")
        if self.kind == "order" and len(self.variants) < 2:
            raise ValueError("an order claim needs at least two variants")
        if self.kind == "relative_reduction" and (len(self.variants) != 2 or not 0 < self.threshold < 1):
            raise ValueError("a relative_reduction claim needs (with, without) variants and a threshold in (0, 1)")


@dataclasses.dataclass(frozen=True)
class Table:
    name: str  # command and file name: results/<name>.md
    title: str
    source: str  # where the paper's numbers come from, with confidence
    rows: tuple[PaperRow, ...]
    variants: tuple[Variant, ...]
    tolerance_pp: float  # |ours - paper| within this many points = reproduced [ours]
    notes: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()  # checked and shown under the table (results.evaluate_claim)
    figure: str | None = None  # "error_curves": results.write_table also draws nin_repro.figures
    # Also report the first epoch at which each run's test error reaches this (%), if set.
    target_error_pct: float | None = None
    smoke: Callable[[Recipe], Recipe] = smoke_recipe  # the --smoke rewrite of every variant's recipe
    # "paper": a table of the paper (or our ablation) at full scale; "demo": a demo-scale version on
    # the shipped digits, never a reproduction (the summary marks its rows "demo", not "full").
    scale: str = "paper"

    def variant(self, key: str) -> Variant:
        for v in self.variants:
            if v.key == key:
                return v
        raise UsageError(f"table {self.name} has no variant {key!r}")

    def select_rows(self, names: str) -> tuple[str, ...]:
        """The variant keys named in ``--rows`` ("a,b"), in the table's order; an unknown name is a
        usage error listing the valid ones."""
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        keys = [v.key for v in self.variants]
        unknown = [n for n in wanted if n not in keys]
        if unknown or not wanted:
            what = f"unknown row {unknown[0]!r}" if unknown else "no row named"
            raise UsageError(f"--rows: {what} for {self.name}; choose from {', '.join(keys)}")
        return tuple(k for k in keys if k in wanted)

    def rows_to_run(self, baselines: bool) -> tuple[str, ...]:
        """The variant keys a run trains when ``--rows`` names none: every one with ``baselines``,
        else all but the baseline rows (which the table then shows as not run)."""
        return tuple(v.key for v in self.variants if baselines or not v.baseline)

    def paper_row(self, variant_key: str) -> PaperRow | None:
        return next((r for r in self.rows if r.variant == variant_key), None)
