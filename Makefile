PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REFERENCE := gfpgan==1.3.8 basicsr==1.4.2 facexlib==0.3.0 realesrgan==0.3.0

.PHONY: install demo serve test lint clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[test]' 'setuptools>=70.1' wheel  # basicsr is an sdist built in place
	$(BIN)/pip install -q --no-deps --no-build-isolation $(REFERENCE)
	touch $@

$(VENV)/.lint: $(BIN)/activate
	$(BIN)/pip install -q 'ruff>=0.6'
	touch $@

install: $(VENV)/.runtime

# Restore the bundled example photos with the official v1.4 weights (downloaded on first use).
demo: $(VENV)/.runtime
	$(BIN)/python infer.py -v 1.4 -i examples/photos -o results/demo
	@echo "see results/demo/restored_imgs/ and results/demo/cmp/ (each face: input | restored)"

# The web page for people with old photos: http://127.0.0.1:7860
serve: $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[demo,video]'
	$(BIN)/python -m gfpgan_jax.demo

test: $(VENV)/.test
	$(BIN)/python -m pytest -n 2 -q tests

# Import order, unused names and the 120-column limit, as configured in pyproject.toml.
lint: $(VENV)/.lint
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) results
