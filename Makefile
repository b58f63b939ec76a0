# nin-repro: one target per paper table (those that exist so far), then the summary.
PY ?= python
NIN ?= nin-repro
SEEDS ?=
ARGS ?=

.PHONY: install test check-gpu demo smoke reproduce-all reproduce-protocol reproduce-smoke analysis analysis-demo clean

install:
	$(PY) -m pip install -e '.[dev]'

test:
	$(PY) -m pytest -q

# The first thing to run on a GPU machine: speed and the recipes at full length in <= 10 minutes.
check-gpu:
	$(NIN) check-gpu $(ARGS)

demo:
	$(NIN) demo

smoke:
	$(NIN) cifar10 --smoke

# Full-length reproductions: 260 epochs x 3 seeds per row. Run on GPUs.
# Every experiment file that declares a command (`nin-repro tables`), in the paper's order.
TABLES ?= $(shell $(NIN) tables)

# Its (table, row, seed group) jobs spread over every GPU here, one worker per GPU
# (ARGS='--executor slurm --partition ...' for a SLURM cluster; README, "Several GPUs and clusters").
reproduce-all:
	@test -n "$(TABLES)" || { echo "no table commands found: install nin-repro first (make install)" >&2; exit 2; }
	$(NIN) reproduce-all $(foreach t,$(TABLES),--tables $(t)) $(ARGS)
	$(MAKE) analysis

# The maxout rows by their authors' own protocol (validation phase with early stopping, then a
# retrain, svhn2.yaml or mnist_continued.yaml; nin_repro/protocol.py) instead of the README's fixed
# epoch counts. Run on GPUs: each phase runs to 100 epochs past its best. Tables go to results/partial/.
reproduce-protocol:
	$(NIN) cifar10 --rows maxout_dropout,maxout_dropout_aug --recipe protocol $(ARGS)
	$(NIN) svhn --rows maxout_dropout --recipe protocol $(ARGS)
	$(NIN) mnist --rows maxout_dropout --recipe protocol $(ARGS)

# Why GAP works, on the saved runs of cifar10 / ablate-gap (after reproduce-all).
analysis:
	$(NIN) figure4
	$(NIN) cam --run runs/ablate-gap/nin_gap/seed_0
	$(NIN) gap-claims
	$(NIN) report

# The same analyses at demo scale on real digits, offline, a few minutes on a CPU (README figures).
analysis-demo:
	$(NIN) demo
	$(NIN) figure4 --run runs/demo/nin_digits5k/seed_0
	$(NIN) cam
	$(NIN) gap-claims
	$(NIN) ablate-aux --demo --seeds 3
	$(NIN) ablate-precision --demo --seeds 3
	$(NIN) plot runs/analysis/gap/seed_0 runs/analysis/fc/seed_0 runs/ablate-aux-demo/nin_gap_aux/seed_0 --out results/curves.png
	$(NIN) report

reproduce-smoke:
	$(NIN) demo
	@test -n "$(TABLES)" || { echo "no table commands found: install nin-repro first (make install)" >&2; exit 2; }
	for t in $(TABLES); do $(NIN) $$t --smoke --baselines || exit 1; done
	$(NIN) report --results-dir results/smoke

clean:
	rm -rf runs results/smoke results/partial
