# The two commands: `make run` starts the whole system, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Every package pinned with its hashes (make lock / make upgrade write them).
# The overrides drop what no code of ours imports (OpenCV, which needs libGL).
LOCK_FLAGS := --generate-hashes --universal --python-version 3.11 --quiet \
	--override requirements/overrides.txt --custom-compile-command "make lock"
LOCK_SOURCES := pyproject.toml cli/pyproject.toml requirements/tools.in

.PHONY: run test test-llmcpp lint format typecheck lock upgrade
# Options of the run command: make run ARGS="--verbose --new-demo-key --no-island"
run: $(VENV)/.installed
	$(BIN)/python -m config.stack run $(ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=true $(BIN)/mypy .
	$(BIN)/python -m config.stack test

# The llmcpp runtime on a tiny generated GGUF model. llama-cpp-python builds from source
# (7 minutes or more on a 2-core machine, at every install), so it is not in the test
# set; this adds it (requirements/llmcpp.txt: the test set plus the llmcpp extra).
test-llmcpp: $(VENV)/.installed-dev
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/uv pip sync -q --python $(BIN)/python \
		--require-hashes requirements/llmcpp.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e ./cli
	$(BIN)/python -m config.stack test tests/agent/test_llmcpp.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy's Django plugin loads the settings, which need DEBUG (or a SECRET_KEY).
typecheck: $(VENV)/.installed-dev
	DEBUG=true $(BIN)/mypy .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# After a change of the dependency lists: pin what changed, keep every other pin.
lock: $(BIN)/uv
	$(BIN)/uv pip compile $(LOCK_FLAGS) --extra onnx $(LOCK_SOURCES) -o requirements/base.txt
	$(BIN)/uv pip compile $(LOCK_FLAGS) --extra onnx --extra dev -c requirements/base.txt \
		$(LOCK_SOURCES) -o requirements/dev.txt
	$(BIN)/uv pip compile $(LOCK_FLAGS) --extra onnx --extra dev --extra llmcpp \
		-c requirements/dev.txt $(LOCK_SOURCES) -o requirements/llmcpp.txt

# Every pin to the newest release the dependency lists allow.
upgrade: $(BIN)/uv
	$(BIN)/uv pip compile $(LOCK_FLAGS) --upgrade --extra onnx $(LOCK_SOURCES) \
		-o requirements/base.txt
	$(BIN)/uv pip compile $(LOCK_FLAGS) --upgrade --extra onnx --extra dev -c requirements/base.txt \
		$(LOCK_SOURCES) -o requirements/dev.txt
	$(BIN)/uv pip compile $(LOCK_FLAGS) --upgrade --extra onnx --extra dev --extra llmcpp \
		-c requirements/dev.txt $(LOCK_SOURCES) -o requirements/llmcpp.txt

# uv itself comes from the lock, its hashes checked by pip.
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	awk '/^uv==/{p=1} p{print} p&&!/\\$$/{exit}' requirements/base.txt > $(VENV)/uv.txt
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(VENV)/uv.txt

# Reinstall only when a lock file changed, so a second run starts in seconds.
$(VENV)/.installed: requirements/base.txt cli/pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install -q --python $(BIN)/python --require-hashes -r requirements/base.txt \
		--override requirements/overrides.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e ./cli
	touch $@

# The test set exactly as locked (sync removes what the lock does not list).
$(VENV)/.installed-dev: requirements/dev.txt $(VENV)/.installed
	$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes requirements/dev.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e ./cli
	touch $@
