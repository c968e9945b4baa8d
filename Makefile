# rkd-book: two commands.
#   make book   install, execute every notebook at scale="ci" (BOOK_SCALE) with papermill into
#               _build/notebooks/ci/ (their numbers read from results/), build the book from a copy
#               of the sources into _build/html (tracked files untouched)
#   make test   install, the layers and linters, unit tests, a sample of the stored results retrained
#               bit for bit, nbval over the committed notebooks, the book built from the committed
#               notebooks (no warnings allowed), then every page checked in headless Chromium
# For maintainers: `make results` retrains every run of every page and rewrites results/ (hours;
# resumable); `make notebooks` copies the executed notebooks over the committed ones.
# Everything installs into .venv (pinned by constraints.txt) and book/node_modules (MathJax,
# pinned by book/package-lock.json) when missing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rkd-installed
NPM_STAMP := book/node_modules/.rkd-installed
FASHION_MNIST ?= /usr/share/datasets/fashion-mnist
BUILD  := _build
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
# the stand-in scale the book's pages are executed at: ci (results/), or converged
# (results/converged/, once `make results SCALE=converged` has written every page)
BOOK_SCALE ?= ci
EXECUTED_DIR := $(BUILD)/notebooks/$(BOOK_SCALE)
EXECUTED  := $(patsubst notebooks/%,$(EXECUTED_DIR)/%,$(NOTEBOOKS))
# an executed notebook is stale when the notebook or any of rkd's sources changed
RKD_SOURCES := $(shell find rkd -name '*.py' -not -path 'rkd/book/*')
# the committed notebooks' book, built and checked by `make test`
CHECKED_BOOK := $(BUILD)/committed/_build/html
# Debian packages: the glyph datasets render characters from the Noto fonts; the browser
# test runs Chromium; the CPU-pin test emulates other processors with qemu-user. Installed by
# `make install` when running as root on Debian.
SYSTEM_PACKAGES := fonts-noto-core chromium qemu-user
# unit tests and nbval on this many pytest-xdist workers (0: one process)
PYTEST_WORKERS ?= 2
# jupyter-book: warnings are errors (-W), nitpicky references (-n), report them all
JB_FLAGS := -W -n --keep-going

# one thread and a fixed hash seed keep the ci-scale numbers bit-for-bit repeatable (and a
# loaded machine fast: OpenMP threads that wait on each other slow down 20x under contention)
export OMP_NUM_THREADS := 1
export PYTHONHASHSEED := 0
# few progress-bar updates: a notebook kernel that floods its output channel with
# thousands of bar redraws can drop messages, which fails nbval at random
export TQDM_MININTERVAL := 10
export RKD_FASHION_MNIST := $(FASHION_MNIST)
# trained teachers and rendered data are cached here (git-ignored; `make clean` removes it)
export RKD_CACHE_DIR := $(CURDIR)/.cache
# the MathJax the book serves (the rkd Sphinx extension copies it into _static/mathjax)
export RKD_MATHJAX_DIR := $(CURDIR)/book/node_modules/mathjax/es5

.PHONY: book test install system data notebooks lint unit verify-results results nbval committed-book browser clean
# a recipe that fails leaves no half-written target behind (an executed notebook above all)
.DELETE_ON_ERROR:

book: install data $(EXECUTED)
	rm -rf $(BUILD)/src $(BUILD)/html $(BUILD)/.doctrees $(BUILD)/jupyter_execute
	$(PY) -m rkd.book.assemble --notebooks $(EXECUTED_DIR) --out $(BUILD)/src
	$(VENV)/bin/jupyter-book build $(BUILD)/src --path-output $(CURDIR) $(JB_FLAGS)
	@echo "book: open $(BUILD)/html/index.html"

test: install data lint unit verify-results nbval committed-book browser

install: $(STAMP) $(NPM_STAMP) system

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "rkd-book needs Python 3.11 (torch 2.14.1 wheels); set PYTHON=python3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test]"
	touch $@

# MathJax for the book, from the npm registry, exactly as book/package-lock.json pins it
$(NPM_STAMP): book/package.json book/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q npm || (apt-get update -q && apt-get install -y -q npm); \
	  else \
	    echo "install: npm is missing; it installs MathJax, which the book serves itself."; \
	    echo "  On Debian/Ubuntu: sudo apt-get install npm; elsewhere install Node.js (it includes npm)."; \
	    exit 1; \
	  fi; \
	fi
	npm ci --prefix book --no-audit --no-fund --loglevel=error
	touch $@

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing); \
	else \
	  echo "install: these Debian packages are missing:$$missing"; \
	  echo "  sudo apt-get install$$missing"; \
	  echo "  fonts-noto-core: the fonts the glyph datasets are rendered from (the ci notebooks need them);"; \
	  echo "  chromium: the browser test of make test (skipped, with a message, without it)."; \
	fi

data:
	@if ls $(FASHION_MNIST)/train-images-idx3-ubyte* >/dev/null 2>&1; then \
	  echo "data: Fashion-MNIST found in $(FASHION_MNIST)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)); \
	else \
	  echo "data: Fashion-MNIST is missing from $(FASHION_MNIST)."; \
	  echo "  On Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist"; \
	  echo "  Elsewhere: put the four idx files (train-images-idx3-ubyte.gz, ...) from"; \
	  echo "  github.com/zalandoresearch/fashion-mnist in a folder and run"; \
	  echo "  make book FASHION_MNIST=/that/folder (it is passed on as RKD_FASHION_MNIST)."; \
	  exit 1; \
	fi

# One executed notebook, by papermill (rkd.report.execute starts a kernel again when it fails
# to start: two kernels launched at once under -j2 can collide on a port). Progress goes to
# this terminal: a line per notebook here, and a bar per training run from rkd (written to
# the kernel's own stderr, never the notebook).
$(EXECUTED_DIR)/%.ipynb: notebooks/%.ipynb $(RKD_SOURCES) $(STAMP) | data
	@mkdir -p $(@D)
	@echo "== papermill: $< (scale=$(BOOK_SCALE)) -> $@, started $$(date +%H:%M:%S)"
	@start=$$(date +%s); \
	if ! $(PY) -m rkd.report.execute "$<" "$@" -p scale $(BOOK_SCALE); then \
	  mv -f "$@" "$(@:.ipynb=.failed.ipynb)" 2>/dev/null; \
	  echo "== papermill FAILED on $<; the partly executed notebook is $(@:.ipynb=.failed.ipynb)"; exit 1; \
	fi; \
	printf '\n== %s done in %s s\n' "$<" "$$(( $$(date +%s) - start ))"

# For maintainers: execute (when stale) and copy the executed notebooks over the committed ones.
notebooks: install data $(EXECUTED)
	cp $(EXECUTED) notebooks/
	@echo "notebooks: refreshed $(words $(EXECUTED)) committed notebooks from $(EXECUTED_DIR)/; review with git diff"

# the package's layers (import-linter contracts in pyproject.toml), style and dead code
lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check rkd tests benchmarks
	$(VENV)/bin/vulture

unit: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests

# chains of the stored results (pretrained trunk, teacher, student) retrained from scratch, a sample
# chosen afresh on each commit, compared with the store bit for bit; stale or missing records fail.
# The verified models are then kept in .cache, where the notebooks (nbval) read them instead of
# training them again (the two pretrained trunks above all)
RESULTS_SAMPLE ?= 12
# drawn so that the sample's recorded training time stays within this many core-minutes (20 keeps every
# page in every sample and still draws the longest chains, the RRD tuning runs, on about one commit in six)
RESULTS_BUDGET ?= 20
verify-results: install data
	$(PY) -m rkd.experiments.results verify --sample $(RESULTS_SAMPLE) --budget-minutes $(RESULTS_BUDGET) --jobs $(PYTEST_WORKERS) --scale $(BOOK_SCALE) \
	  --into-cache \
	  --seed "$$(git rev-parse HEAD 2>/dev/null || echo uncommitted)"
	$(PY) -m rkd.experiments.results check --scale converged --written

# every run of every page retrained on this machine's cores, results/ rewritten (resumable: the
# finished runs wait in .cache/results-run/, their records in results/unfinished/, until the store
# is written; a fresh clone with that folder committed goes on where the last refresh stopped)
# SCALE=converged: the stand-in regime trained to its plateau instead (about 17 hours on 2 cores;
# results/converged/, read by the notebooks run with scale="converged")
SCALE ?= ci
results: install data
	$(PY) -m rkd.experiments.results refresh --scale $(SCALE)

# nbval re-executes the committed notebooks from an empty model cache (the glyph renders, a pure
# function of their config, are kept): their numbers come from results/ (verify-results retrains a
# sample of them), the few models a page draws from are retrained; every output must come out again
nbval: install data
	rm -rf $(BUILD)/nbval-cache/models $(BUILD)/nbval-cache/weights $(BUILD)/nbval-cache/checkpoints
	RKD_CACHE_DIR=$(CURDIR)/$(BUILD)/nbval-cache $(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) \
	  --dist loadfile -p tests.nbval_kernel_retry --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg $(NOTEBOOKS)

# the book of the committed notebooks, as `make test` checks it (no execution)
committed-book: install
	rm -rf $(BUILD)/committed
	$(PY) -m rkd.book.assemble --notebooks notebooks --out $(BUILD)/committed/src
	$(VENV)/bin/jupyter-book build $(BUILD)/committed/src --path-output $(BUILD)/committed $(JB_FLAGS)

# every page of that book in headless Chromium (Playwright drives the system's Chromium), and
# the package's reference checked for every public name; a screenshot of every page in
# _build/screenshots/, named as the page (notebooks/table1_metric_learning.png)
browser: install
	rm -rf $(BUILD)/screenshots
	RKD_BOOK_HTML=$(CHECKED_BOOK) RKD_BOOK_SCREENSHOTS=$(BUILD)/screenshots \
	  $(PY) -m pytest -q -p no:cacheprovider tests/test_book_browser.py

clean:
	rm -rf $(BUILD) .cache
