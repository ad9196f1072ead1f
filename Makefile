# `make demo` and `make test` create .venv themselves on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench setup clean screenshot

$(STAMP): pyproject.toml
	@if command -v apt-get >/dev/null && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
		echo "note: could not install dataset-fashion-mnist (needs root); see README"; fi
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/roar run specs/demo.yaml
	$(BIN)/roar report results/demo -o results/demo-report

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/roar bench

# docs/report-first-screen.png: the first screen of the report at 1280 px in headless Chromium (Debian
# package chromium, installed here when apt-get can), of results/demo when it holds rows, else of synthetic
# demo-like rows. Also fails when the page has console errors, broken images or overflow.
screenshot: $(STAMP)
	@command -v chromium >/dev/null || ! command -v apt-get >/dev/null || \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq chromium) || \
		echo "note: could not install chromium (needs root); see README"
	$(BIN)/python -m analysis.browser $$(test -d results/demo/rows && echo --store results/demo) \
		--screenshot docs/report-first-screen.png

clean:
	rm -rf $(VENV) results

# A real two-node Ray cluster on 127.0.0.1 (`ray start` head + worker, own ports and temp folder),
# `ray job submit` of specs/smoke.yaml, a worker raylet killed mid-sweep: tests/test_cluster_cli.py.
.PHONY: cluster-test
cluster-test: $(STAMP)
	$(BIN)/pip install -q -e '.[cluster]'
	$(BIN)/python -m pytest -q -m slow -p no:cacheprovider --durations=0 tests/test_cluster_cli.py
