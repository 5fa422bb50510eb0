# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv when missing, installs the system libraries Open3D needs and the package, then runs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SYSLIBS := libusb-1.0-0 libvulkan1 mesa-vulkan-drivers libegl1 libgl1 libgomp1 xvfb xauth chromium chromium-driver
DEMO    ?= demo

.PHONY: demo test lint bench system clean

demo: $(STAMP)
	$(BIN)/howto3d demo --out $(DEMO)

test: lint
	$(BIN)/python -m pytest -q -n 2 --durations=25

# Style, layers and types: ruff's lint and format checks, import-linter, mypy (strict on recon/).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b --quick || exit 1; done

system:
	@missing=$$(for p in $(SYSLIBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system libraries: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Open3D needs these Debian packages: $$missing"; \
	    echo "run: sudo apt-get install -y $$missing   (then run make again)"; exit 1; \
	  fi; \
	fi

# torch first (the CPU build on disk), so nothing pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | system
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(DEMO)
