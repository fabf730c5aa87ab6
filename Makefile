# Every target creates or reuses the Python 3.10 virtualenv in .venv first.
PY := .venv/bin/python
OUT ?= output/demo

.PHONY: venv demo test test-fast test-portable clean

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

## The numerics-sensitive tests under the generic and AVX2 CPU kernels, 1 thread (other machines).
test-portable: venv
	bash scripts/test_portable.sh

clean:
	rm -rf output .pytest_cache
