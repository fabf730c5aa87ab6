# Every target creates or reuses the Python 3.10 virtualenv in .venv first.
PY := .venv/bin/python
OUT ?= output/demo

.PHONY: venv demo test test-fast clean

venv:
	@bash scripts/bootstrap_venv.sh

## The main job: train a small MLLA-RT-DETR on the embedded dataset (CPU), evaluate, plot.
demo: venv
	$(PY) tools/run_demo.py --output-dir $(OUT)

## The whole test suite (CPU).
test: venv
	$(PY) -m pytest -q tests

## Everything but the slow end-to-end tests.
test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf output .pytest_cache
