# Two commands do all set-up: `make demo` and `make test`. Both create .venv on first use.
# `make test-fast` is the inner loop: the same suite without the end-to-end tests marked slow (CI runs `make test`).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-zoo test test-fast test-tools lint clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	# torch first with its pin: an unpinned resolver pass may pull a different multi-GB build.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[all]'
	# onnx2tf hard-pins ~17 old packages; install it without them (the route needs only these).
	$(BIN)/pip install -q --no-deps onnx2tf==1.29.24 onnx-graphsurgeon==0.6.1 sng4onnx==2.0.1
	@touch $(STAMP)

demo: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m benchmarks.demo

demo-zoo: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m benchmarks.demo --zoo

# The tools the suite needs beyond the venv (both scripts are idempotent: nothing to do once present).
test-tools: $(STAMP)
	bash android_demo/tools/fetch_toolchain.sh
	bash tools/install_test_tools.sh

test: test-tools
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -ra

test-fast: test-tools
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -ra -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
