PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The GPU check (benchmarks/gpu_check.py): wheels for the GPU machine's Python 3.12, installed there with
# the project into GPU_SITE over that machine's own torch.
GPU_WHEELS := gpu-wheels
GPU_WHEELS_MAX_MB := 60
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64
GPU_PYTHON ?= python3
GPU_SITE ?= /tmp/mlff-gpu-site
GPU_INSTALL := -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE)

.PHONY: demo test bench install system-packages clean gpu-wheels gpu-check

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/campaign submit examples/quickstart.yaml
	$(BIN)/campaign results examples/quickstart.yaml

system-packages:
	bash .ci/system-packages.sh

test: $(STAMP) system-packages
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.md_throughput

gpu-wheels:
	rm -rf $(GPU_WHEELS)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(addprefix --platform ,$(GPU_PLATFORMS)) -d $(GPU_WHEELS) -r benchmarks/gpu_wheels.txt
	@size_MB=$$(du -sm $(GPU_WHEELS) | cut -f1); echo "$(GPU_WHEELS)/: $$(ls $(GPU_WHEELS) | wc -l) wheels, $$size_MB MB"; \
		test $$size_MB -lt $(GPU_WHEELS_MAX_MB) || { echo "over $(GPU_WHEELS_MAX_MB) MB" >&2; exit 1; }

gpu-check:
	@test -n "$(OUT)" || { echo "usage: make gpu-check OUT=dir" >&2; exit 2; }
	$(GPU_PYTHON) $(GPU_INSTALL) $(GPU_WHEELS)/*.whl
	PYTHONPATH=$(GPU_SITE) $(GPU_PYTHON) $(GPU_INSTALL) --no-build-isolation .
	PYTHONPATH=$(GPU_SITE) $(GPU_PYTHON) -m benchmarks.gpu_check --out $(OUT)

clean:
	rm -rf $(VENV) examples/quickstart-runs $(GPU_WHEELS)
