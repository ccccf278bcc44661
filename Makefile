# Fresh machine: `make demo` runs the default training demo, `make test` the test suite.
# Both create .venv and install what they need (see README for why torch 2.14.1).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint fashion-mnist

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch + torchvision first, from this machine's disk, so nothing pulls another build
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,vision,text,serve,postgres,bench]'
	touch $(STAMP)

# --resume: a second `make demo` reprints the finished run's table instead of refusing
# to overwrite runs/demo (delete that folder to train again).
demo: install
	$(VENV)/bin/mrl train --config configs/demo.yaml --resume

# Fashion-MNIST is fetched best-effort (its tests skip without it; nothing else needs it).
test: install
	-@$(MAKE) --no-print-directory fashion-mnist || echo "Fashion-MNIST not installed: its tests will skip"
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

# Fashion-MNIST (benchmark data) installs offline as a Debian package.
fashion-mnist:
	@test -d /usr/share/datasets/fashion-mnist || apt-get install -y -q dataset-fashion-mnist >/dev/null
