# nin-repro: one target per paper table (those that exist so far), then the summary.
PY ?= python
NIN ?= nin-repro
SEEDS ?=
ARGS ?=

.PHONY: install test demo smoke reproduce-all reproduce-smoke clean

install:
	$(PY) -m pip install -e '.[dev]'

test:
	$(PY) -m pytest -q

demo:
	$(NIN) demo

smoke:
	$(NIN) cifar10 --smoke

# Full-length reproductions: 260 epochs x 3 seeds per row. Run on a GPU.
TABLES = cifar10 cifar100 svhn mnist ablate-gap ablate-dropout

reproduce-all:
	for t in $(TABLES); do $(NIN) $$t $(ARGS) || exit 1; done
	$(NIN) report

reproduce-smoke:
	$(NIN) demo
	for t in $(TABLES); do $(NIN) $$t --smoke || exit 1; done
	$(NIN) report --results-dir results/smoke

clean:
	rm -rf runs results/smoke results/partial
