# Everything runs from the project's own virtualenv; `make plan` or `make test` on a fresh
# machine creates it and installs the locked requirements (exact versions, sha256 hashes) first.
PYTHON_SYSTEM ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
# One per Pulumi.<stack>.yaml: the same glob as tool_cli.stack_names, which the tools, the tests and plan-drift.yml use.
STACKS := $(patsubst Pulumi.%.yaml,%,$(wildcard Pulumi.*.yaml))
POLICY_CONFIG = policies/config/$(STACK).json
CHECK_CONFIG ?= policies/config/prod.json

CHECKOV_VENV := .venv-checkov

# Errors name the make variable you typed (MAX_MODEL_LEN, STACK), not the Python flag make passed;
# only for the commands people type (not `make test`, whose tests check the flags' own messages).
plan plans recommend loadtest e2e bench: export TPU_SERVING_FROM_MAKE := 1
# JSON=1 output must parse: make echoes no command then.
ifneq ($(JSON),)
.SILENT:
endif

.PHONY: help install lock plan plans check checkov test test-slow test-full lint typecheck unit recommend loadtest bench preview up destroy clean distclean

help:
	@echo "make plan [STACK=dev]           offline preview: resource tree, plan.json, manifests, policies, graph (no CLI, no cloud)"
	@echo "make plans                      make plan for every Pulumi.<stack>.yaml"
	@echo "make check MANIFESTS='a.yaml'   run the policy pack over plain Kubernetes YAML [CHECK_CONFIG=policies/config/dev.json]"
	@echo "make test                       lint, type-check, the fast tests (~25 s warm; pytest -m 'not slow')"
	@echo "make test-slow                  the slow tests alone: subprocesses, checkov, e2e/loadtest fakes, fuzzing, gRPC"
	@echo "make test-full                  lint, type-check and every test (CI runs the same: make test, then make test-slow)"
	@echo "make install                    .venv from the hashed locks (make distclean removes .venv and .venv-checkov)"
	@echo "make lock [UPGRADE=1]           regenerate every requirements*.lock (pip-compile --generate-hashes)"
	@echo "make checkov                    checkov (pinned, own venv) over every stack's rendered manifests"
	@echo "make recommend MODEL=hf/id      smallest TPU slice that fits a model"
	@echo "make loadtest URL=http://...    measure a running server and recommend an HPA target"
	@echo "make bench                      offline plan speed ratios"
	@echo "make preview|up|destroy STACK=  the Pulumi CLI with the policy pack (needs the CLI and GCP credentials)"
	@echo "make e2e STACK=dev [KEEP=1]     the real path end to end: up, serve, load, HPA, no drift, destroy (CLI, GCP, kubectl)"

# The oldest Python the project runs on (pyproject.toml's target). Checked before a virtualenv is
# made, so an older python3 gets one line saying what to install instead of a half-made .venv.
PYTHON_MIN := 3.11
PYTHON_OK := import sys; sys.exit(sys.version_info < (3, 11))
PYTHON_TOO_OLD = echo "make: this project needs Python >= $(PYTHON_MIN) with its venv module; $(PYTHON_SYSTEM) is $$($(PYTHON_SYSTEM) --version 2>&1 | head -n 1 || echo missing): install python$(PYTHON_MIN) and python$(PYTHON_MIN)-venv (or newer), then run make PYTHON_SYSTEM=python$(PYTHON_MIN) ..." >&2

# $(call locked-venv,DIR,LOCK): DIR holds a virtualenv with pip from requirements-pip.lock and then
# exactly LOCK, every file checked against its sha256 (--require-hashes). A virtualenv whose Python
# is missing or too old is made anew; one that fails to be made or to install is removed whole, so
# no broken virtualenv is left behind and the next make starts clean.
define locked-venv
	@if ! $(1)/bin/python -c '$(PYTHON_OK)' 2>/dev/null; then \
		$(PYTHON_SYSTEM) -c '$(PYTHON_OK)' 2>/dev/null || { $(PYTHON_TOO_OLD); exit 1; }; \
		rm -rf $(1); \
		echo "$(PYTHON_SYSTEM) -m venv $(1)"; \
		$(PYTHON_SYSTEM) -m venv $(1) || { rm -rf $(1); echo "make: $(PYTHON_SYSTEM) -m venv failed: install python$(PYTHON_MIN)-venv (Debian/Ubuntu) for your Python" >&2; exit 1; }; \
	fi
	@echo "$(1)/bin/python -m pip install --require-hashes -r requirements-pip.lock -r $(2)"
	@$(1)/bin/python -m pip install --quiet --require-hashes -r requirements-pip.lock \
		&& $(1)/bin/python -m pip install --quiet --require-hashes -r $(2) \
		|| { rm -rf $(1); echo "make: installing $(2) into $(1) failed; $(1) was removed" >&2; exit 1; }
	@touch $(1)/.installed
endef

# One virtualenv for everything make runs: the program and pack (requirements.txt), the tools
# (requirements-tools.txt) and the checks (requirements-dev.txt), locked together in requirements-dev.lock.
$(VENV)/.installed: requirements-pip.lock requirements-dev.lock requirements-tools.lock requirements.lock
	$(call locked-venv,$(VENV),requirements-dev.lock)

install: $(VENV)/.installed

# checkov pins many packages that conflict with pulumi's, so it gets a virtualenv of its own.
$(CHECKOV_VENV)/.installed: requirements-pip.lock requirements-checkov.lock
	$(call locked-venv,$(CHECKOV_VENV),requirements-checkov.lock)

# Every requirements file and the lock pip installs from: `make lock` after editing a .txt (new pins
# kept where they still fit), `make lock UPGRADE=1` to move everything to the newest allowed. Run it
# with Python $(PYTHON_MIN), the oldest supported: a lock holds what that Python resolves.
# requirements-dev.lock is the superset `make install` uses (program, tools, checks);
# requirements-tools.lock (program and tools), requirements.lock (the program and pack alone) and
# policies/requirements.lock start from its pins, so all four agree.
LOCK_VENV := build/lock-venv
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links --newline lf $(if $(UPGRADE),--upgrade)

lock:
	@$(PYTHON_SYSTEM) -c '$(PYTHON_OK)' 2>/dev/null || { $(PYTHON_TOO_OLD); exit 1; }
	rm -rf $(LOCK_VENV)
	$(PYTHON_SYSTEM) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-pip.lock
	$(LOCK_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-lock.lock
	$(PIP_COMPILE) -o requirements-pip.lock requirements-pip.txt
	$(PIP_COMPILE) -o requirements-lock.lock requirements-lock.txt
	$(PIP_COMPILE) -o requirements-dev.lock requirements.txt requirements-tools.txt requirements-dev.txt
	cp requirements-dev.lock requirements-tools.lock
	$(PIP_COMPILE) -o requirements-tools.lock requirements-tools.txt
	cp requirements-tools.lock requirements.lock
	$(PIP_COMPILE) -o requirements.lock requirements.txt
	cp requirements.lock policies/requirements.lock
	$(PIP_COMPILE) -o policies/requirements.lock policies/requirements.txt
	$(PIP_COMPILE) -o requirements-checkov.lock requirements-checkov.txt
	rm -rf $(LOCK_VENV)

# Exit 0 clean, 1 a mandatory policy violation, schema error or replacement, 2 bad input; make
# itself exits 2 on any failure, its last line `make: *** [plan] Error N` carries the plan's N.
plan: install
	$(PY) -m offline_plan --stack "$(STACK)" $(if $(filter command line,$(origin POLICY_CONFIG)),--policy-config "$(POLICY_CONFIG)")

# Every stack is planned, each reported, and the highest exit code returned at the end.
plans: install
	@worst=0; summary=""; for s in $(STACKS); do \
		echo "=== make plan STACK=$$s"; \
		$(PY) -m offline_plan --stack "$$s"; code=$$?; \
		summary="$$summary $$s=$$code"; [ $$code -gt $$worst ] && worst=$$code; \
	done; \
	echo "plans (exit codes):$$summary"; exit $$worst

# Plain Kubernetes YAML through the same pack `pulumi preview` runs: exit 1 on a mandatory violation, 2 on unreadable YAML or config.
check: install
	@test -n "$(MANIFESTS)" || { echo "usage: make check MANIFESTS='a.yaml dir/ -' [CHECK_CONFIG=policies/config/dev.json] (files, directories of *.yaml, - for stdin; run kustomize build first)"; exit 2; }
	$(PY) -m policy_runner check $(MANIFESTS) --config $(CHECK_CONFIG)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Incremental: mypy keeps its cache in .mypy_cache (CI restores it between runs).
typecheck: install
	$(VENV)/bin/mypy --cache-dir .mypy_cache .

# $(call pytest-tier,ARGS): pytest ARGS, where "no tests selected" (pytest's exit code 5) is not a
# failure: a tier that happens to be empty passes, every other failure keeps its code.
define pytest-tier
	@echo "$(PY) -m pytest $(1)"
	@$(PY) -m pytest $(1) || { code=$$?; [ $$code -eq 5 ] || exit $$code; echo "pytest: no tests selected ($(1)): nothing to fail"; }
endef

# Two tiers, marked in the tests (`slow`, pyproject.toml): `make test` is the fast one; the slow one
# (subprocess runs of make and python -m, checkov, the e2e and loadtest fakes, hypothesis fuzzing,
# the policy pack over real gRPC) is `make test-slow`; `make test-full` is lint, types and both.
unit: install
	$(call pytest-tier,-m 'not slow')

test-slow: install $(CHECKOV_VENV)/.installed
	$(call pytest-tier,-m slow)

checkov: install $(CHECKOV_VENV)/.installed
	$(PY) -m pytest tests/test_checkov.py

test: lint typecheck unit

test-full: lint typecheck $(CHECKOV_VENV)/.installed
	$(call pytest-tier,)

# Every option of `python -m recommend` as a make variable (tests/test_recommend.py checks the two agree).
# FROM_HUB=1 is the one online use: it reads config.json from the Hub (HF_TOKEN or a token file); SAVE=1 writes the fact file.
recommend: install
	@test -n "$(MODEL)" || { echo "usage: make recommend MODEL=meta-llama/Llama-3.1-70B [GENERATION=v6e] [MAX_MODEL_LEN=4096] [CONCURRENCY=32] [MEMORY_UTILIZATION=0.95] [QUANTIZATION=auto|bfloat16|float8|int8|int4] [KV_CACHE_DTYPE=auto|fp8] [ALLOW_MULTI_HOST=1] [CONFIG_JSON=path] [PARAMS_B=n] [FROM_HUB=1 [SAVE=1]] [JSON=1]"; exit 2; }
	$(PY) -m recommend --model "$(MODEL)" $(foreach g,$(GENERATION),--generation $(g)) \
		$(if $(MAX_MODEL_LEN),--max-model-len "$(MAX_MODEL_LEN)") $(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)") \
		$(if $(MEMORY_UTILIZATION),--memory-utilization "$(MEMORY_UTILIZATION)") $(if $(QUANTIZATION),--quantization "$(QUANTIZATION)") \
		$(if $(KV_CACHE_DTYPE),--kv-cache-dtype "$(KV_CACHE_DTYPE)") $(if $(ALLOW_MULTI_HOST),--allow-multi-host) \
		$(if $(CONFIG_JSON),--config-json "$(CONFIG_JSON)") $(if $(PARAMS_B),--params-b "$(PARAMS_B)") \
		$(if $(FROM_HUB),--from-hub) $(if $(SAVE),--save) $(if $(JSON),--json)

loadtest: install
	$(PY) -m loadtest $(if $(URL),--url "$(URL)") $(if $(MODEL),--model "$(MODEL)") \
		$(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)") $(if $(DURATION),--duration "$(DURATION)") \
		$(if $(PROMPTS),--prompts "$(PROMPTS)") $(if $(API_KEY_FILE),--api-key-file "$(API_KEY_FILE)") \
		$(if $(CHAT),--chat) $(if $(JSON),--json) $(if $(TTFT_P90),--ttft-p90 "$(TTFT_P90)") \
		$(if $(E2E_P90),--e2e-p90 "$(E2E_P90)") $(if $(METRIC),--metric "$(METRIC)") \
		$(if $(WRITE_STACK),--write-stack "$(WRITE_STACK)") $(if $(STACK_MODEL),--stack-model "$(STACK_MODEL)")

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

# clean, and both virtualenvs: the next make builds them again from the locks.
distclean: clean
	rm -rf $(VENV) $(CHECKOV_VENV)
