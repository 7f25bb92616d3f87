# Every target creates .venv (and node_modules for the CDK CLI) when absent, using only python3, npm
# and the package registries, so a fresh clone needs nothing else.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# checkov in a venv of its own: it pins boto3 1.35 and packaging 23, the project pins newer ones.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_PINS := .ci/checkov-requirements.txt
export AWS_ACCOUNT_ID_ENDPOINT_MODE := disabled
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install layer-deps demo test lint format unit integration infra e2e synth cdk-synth checkov forwarder-template bench clean

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Lambda layer with the AWS SDK pinned in pyproject.toml (python3.13, arm64 wheels from PyPI) in
# build/layers/dependencies. Rebuilt only when its stamp differs from the pins, so it costs nothing
# when they have not changed; every synth also makes sure of it (infra/app.py).
layer-deps: $(PY_STAMP)
	$(PY) -m infra.dependencies_layer

demo: $(PY_STAMP)
	$(BIN)/connect-metering simulate --out out/demo

# Lint gates: ruff (style, security, complexity: C901 at 10), formatting, mypy --strict, the import
# contract (import-linter) and the 600-line module bound.
lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/core/python/connect_metering functions infra tests
	PYTHONPATH=layers/core/python:. $(BIN)/lint-imports
	$(PY) scripts/module_size.py

format: $(PY_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make test` is what CI runs: lint, checkov on the synthesized templates, then every test, spread over
# both cores: the unit and integration markers measuring the coverage of the domain and the services
# (below the floor in pyproject.toml, [tool.coverage.report] fail_under, the run fails), then the
# others (infra, e2e) without it. Coverage is kept to the first run because tracing cost that run
# about half again its CPU time (229 s -> 351 s measured; over the 40% this project accepts).
COVERAGE := --cov=connect_metering.domain --cov=connect_metering.services
test: $(PY_STAMP) $(NODE_STAMP) lint layer-deps checkov
	$(BIN)/pytest -n 2 --dist loadgroup -m "unit or integration" $(COVERAGE)
	$(BIN)/pytest -n 2 --dist loadgroup -m "not (unit or integration)"

unit: $(PY_STAMP)
	$(BIN)/pytest -m unit

integration: $(PY_STAMP)
	$(BIN)/pytest -m integration

infra: $(PY_STAMP) $(NODE_STAMP) layer-deps
	$(BIN)/pytest -m infra

e2e: $(PY_STAMP) $(NODE_STAMP)
	$(BIN)/pytest -m e2e

# Synths for inspection (cdk-nag, checkov, the tests) are never deployed, so they may use the placeholder
# product code; a deploy passes -c product_code=... instead (README, Deploy).
LOCAL_SYNTH := -c allow_placeholder_product_code=true

# Python synth (cdk-nag runs on it and fails on any unacknowledged finding).
synth: $(PY_STAMP) layer-deps
	$(PY) infra/app.py $(LOCAL_SYNTH)

$(CHECKOV_STAMP): $(CHECKOV_PINS)
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(CHECKOV_PINS)
	touch $@

# checkov on both stacks' templates (a fresh synth), skips and their reasons in .checkov.yaml. Offline:
# no platform download (--skip-download, BC_SKIP_MAPPING), no PyPI version check. About 15 s.
checkov: synth $(CHECKOV_STAMP)
	BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE $(CHECKOV_VENV)/bin/checkov \
		--config-file .checkov.yaml -f cdk.out/MeteringStack.template.json -f cdk.out/ForwarderStack.template.json

# The CDK CLI synth, offline, through cdk.json.
cdk-synth: $(PY_STAMP) $(NODE_STAMP) layer-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" npx --no-install cdk synth --quiet $(LOCAL_SYNTH)

# The CloudFormation template a customer deploys in each account that holds a Connect instance. It holds
# no product code, so the local synth is enough to write it.
forwarder-template: $(PY_STAMP) layer-deps
	$(PY) infra/app.py $(LOCAL_SYNTH)
	mkdir -p build
	cp cdk.out/ForwarderStack.template.json build/forwarder.template.json
	@echo "Forwarder template: build/forwarder.template.json"

bench: $(PY_STAMP)
	$(BIN)/connect-metering bench --out build/bench.json

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules cdk.out out build/layers .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
