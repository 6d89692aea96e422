# Everything runs from the project's own virtualenv; `make plan` or `make test` on a fresh
# machine creates it and installs the pinned requirements first.
PYTHON_SYSTEM ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
STACKS := $(patsubst Pulumi.%.yaml,%,$(wildcard Pulumi.*.yaml))
POLICY_CONFIG = policies/config/$(STACK).json
CHECK_CONFIG ?= policies/config/prod.json

CHECKOV_VENV := .venv-checkov

.PHONY: help install plan plans check checkov test lint typecheck unit recommend loadtest bench preview up destroy clean

help:
	@echo "make plan [STACK=dev]           offline preview: resource tree, plan.json, manifests, policies, graph (no CLI, no cloud)"
	@echo "make plans                      make plan for every Pulumi.<stack>.yaml"
	@echo "make check MANIFESTS='a.yaml'   run the policy pack over plain Kubernetes YAML [CHECK_CONFIG=policies/config/dev.json]"
	@echo "make test                       lint, type-check, tests (incl. checkov over every stack's manifests)"
	@echo "make checkov                    checkov (pinned, own venv) over every stack's rendered manifests"
	@echo "make recommend MODEL=hf/id      smallest TPU slice that fits a model"
	@echo "make loadtest URL=http://...    measure a running server and recommend an HPA target"
	@echo "make bench                      offline plan speed ratios"
	@echo "make preview|up|destroy STACK=  the Pulumi CLI with the policy pack (needs the CLI and GCP credentials)"
	@echo "make e2e STACK=dev [KEEP=1]     the real path end to end: up, serve, load, HPA, no drift, destroy (CLI, GCP, kubectl)"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# checkov pins many packages that conflict with pulumi's, so it gets a virtualenv of its own.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON_SYSTEM) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

plan: install
	$(PY) -m offline_plan --stack $(STACK) --policy-config $(POLICY_CONFIG)

plans: install
	@for s in $(STACKS); do $(MAKE) --no-print-directory plan STACK=$$s || exit 1; done

# Plain Kubernetes YAML through the same pack `pulumi preview` runs: exit 1 on a mandatory violation, 2 on unreadable YAML or config.
check: install
	@test -n "$(MANIFESTS)" || { echo "usage: make check MANIFESTS='a.yaml b.yaml' [CHECK_CONFIG=policies/config/dev.json]"; exit 2; }
	$(PY) -m policy_runner check $(MANIFESTS) --config $(CHECK_CONFIG)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

unit: install $(CHECKOV_VENV)/.installed
	$(PY) -m pytest

checkov: install $(CHECKOV_VENV)/.installed
	$(PY) -m pytest tests/test_checkov.py

test: lint typecheck unit

recommend: install
	@test -n "$(MODEL)" || { echo "usage: make recommend MODEL=meta-llama/Llama-3.1-70B [GENERATION=v6e] [MAX_MODEL_LEN=4096] [JSON=1]"; exit 2; }
	$(PY) -m recommend --model "$(MODEL)" $(foreach g,$(GENERATION),--generation $(g)) \
		$(if $(MAX_MODEL_LEN),--max-model-len $(MAX_MODEL_LEN)) $(if $(CONCURRENCY),--concurrency $(CONCURRENCY)) \
		$(if $(ALLOW_MULTI_HOST),--allow-multi-host) $(if $(CONFIG_JSON),--config-json "$(CONFIG_JSON)") $(if $(JSON),--json)

loadtest: install
	$(PY) -m loadtest $(if $(URL),--url "$(URL)") $(if $(MODEL),--model "$(MODEL)") \
		$(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)") $(if $(DURATION),--duration "$(DURATION)") \
		$(if $(PROMPTS),--prompts "$(PROMPTS)") $(if $(API_KEY_FILE),--api-key-file "$(API_KEY_FILE)") \
		$(if $(CHAT),--chat) $(if $(JSON),--json)

bench: install
	$(PY) -m offline_plan.bench

# The real thing: needs the Pulumi CLI, `pulumi login` and GCP credentials.
preview: install
	pulumi preview --stack $(STACK) --policy-pack policies --policy-pack-config $(POLICY_CONFIG)

up: install
	pulumi up --stack $(STACK) --policy-pack policies --policy-pack-config $(POLICY_CONFIG)

destroy:
	pulumi destroy --stack $(STACK)

# up, every model answering and under a short load, every HPA reading its metric, a second preview
# that changes nothing, then destroy (always, even after a failure) unless KEEP=1. Exit 1 on a failed step.
.PHONY: e2e
e2e: install
	$(PY) -m e2e --stack $(STACK) $(if $(KEEP),--keep)

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
