# rkd-book: two commands.
#   make book   install, run every notebook at scale="ci" with papermill, build the book into _build/html
#   make test   install, unit tests, then nbval over the committed notebooks
# Everything installs into .venv from the pinned constraints.txt when missing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rkd-installed
FASHION_MNIST ?= /usr/share/datasets/fashion-mnist
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
# one thread and a fixed hash seed keep the ci-scale numbers bit-for-bit repeatable (and a
# loaded machine fast: OpenMP threads that wait on each other slow down 20x under contention)
export OMP_NUM_THREADS := 1
export PYTHONHASHSEED := 0
# few progress-bar updates: a notebook kernel that floods its output channel with
# thousands of bar redraws can drop messages, which fails nbval at random
export TQDM_MININTERVAL := 10

.PHONY: book test install data notebooks unit nbval clean

book: install data notebooks
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	@echo "book: open _build/html/index.html"

test: install data unit nbval

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "rkd-book needs Python 3.11 (torch 2.14.1 wheels); set PYTHON=python3.11"' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test]"
	touch $@

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

notebooks: install data
	@for nb in $(NOTEBOOKS); do \
	  echo "papermill: $$nb (scale=ci)"; \
	  RKD_FASHION_MNIST=$(FASHION_MNIST) $(VENV)/bin/papermill --kernel python3 --log-level WARNING \
	    "$$nb" "$$nb" -p scale ci || exit 1; \
	done

unit: install
	$(PY) -m pytest -q tests

nbval: install data
	RKD_FASHION_MNIST=$(FASHION_MNIST) $(PY) -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg $(NOTEBOOKS)

clean:
	rm -rf _build
