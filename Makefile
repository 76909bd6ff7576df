# The two commands a newcomer needs:  make demo   and   make test
# Both install what they need first (pinned Python packages into .venv).

SHELL := /bin/bash
VENV := .venv
# The SAM CLI, apart from .venv: it pins a newer boto3 than moto's (requirements-package.txt).
SAM_VENV := $(VENV)/sam
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
CARGO_FLAGS := --workspace --locked

.PHONY: deploy publish setup demo test lint ci standins sam-local sam-layout stack-env bench scale clean-venv template-check policy-check package fuzz bins fmt-check clippy layout help

## Installs the pinned Python tools into .venv and the IAM evaluator (npm ci); the other targets call it.
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt tests/access/package-lock.json
	@command -v python3 >/dev/null || { echo "python3 is required (3.11+)"; exit 1; }
	@command -v npm >/dev/null || { echo "node and npm are required (the IAM evaluator of make template-check)"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --requirement requirements.txt
	cd tests/access && npm ci --no-audit --no-fund --silent
	touch $@

## Runs every job locally against the stand-ins and prints what each did. Built exactly as
## `make test` builds (same command, same feature resolution), so whichever of the two runs
## second compiles nothing: a `cargo run -p` build resolves features without the tests'
## dev-dependencies (SDK `test-util`, tokio `test-util`) and rebuilds the SDK crates.
demo: setup
	cargo test $(CARGO_FLAGS) --all-targets --no-run --quiet
	$${CARGO_TARGET_DIR:-target}/debug/demo

## Runs every test: unit tests and the integration tests against moto and kmock. The build
## first: `cargo test` alone links the functions' binaries only as test harnesses, and
## tests/tests/init.rs starts the real ones (same features as the tests, so nothing twice).
test: setup
	cargo build $(CARGO_FLAGS) --all-targets
	cargo test $(CARGO_FLAGS) --all-targets

## Stand-ins on fixed ports for trying functions by hand, seeded; writes .local.env (cargo lambda)
## and .sam-local.json (sam local invoke --env-vars). See README, "Running a function locally".
standins: setup
	$(VENV)/bin/python tests/standins/up.py

## Every sample in events/ through `sam local invoke` (AWS's runtime emulator from the SAM CLI
## package, in Docker) against fresh stand-ins, each result checked (tests/samlocal/checks.py).
## Uses the `make bins` build laid out as sam build lays it out. Starts dockerd when it can (as
## root, installing Debian's docker.io if missing) and stops what it started; without Docker it
## fails and says how to get it. EVENTS="events/dns-sync/schedule.json ..." runs some.
sam-local: setup $(SAM_VENV)/.installed bins
	$(SAM_VENV)/bin/python tests/samlocal/run.py $(EVENTS)

## For `sam local invoke` by hand (README): the `make bins` build laid out in target/sam-local
## with its template, and the local base image when public.ecr.aws cannot be reached.
sam-layout: setup $(SAM_VENV)/.installed bins
	$(SAM_VENV)/bin/python tests/samlocal/run.py --prepare

## The env-vars file for `sam local invoke` against a deployed stack: STACK=<name> [REGION=...]
## writes .sam-stack.json from each function's deployed variables (deploy/local_env.py says
## which permissions the local credentials need).
stack-env: setup
	$(VENV)/bin/python deploy/local_env.py $(STACK) $(if $(REGION),--region $(REGION)) --out .sam-stack.json

## A first deployment in eight questions (environment, region, alert e-mail, clusters, zone, what
## to export, what rolls where, time zone): writes samconfig.toml's entry, builds, deploys.
## `sam deploy --config-env <env>` redeploys it; everything else is in samconfig.toml.
deploy: setup $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/python deploy/guided.py

## Publishes to the Serverless Application Repository (your credentials): sam build, then
## deploy/publish.py adds the repository's address (git remote origin, or SOURCE_URL), packages
## and publishes. tests/template/sar.py (make template-check) checks the metadata offline.
publish: package
	PATH=$(CURDIR)/$(SAM_VENV)/bin:$$PATH $(SAM_VENV)/bin/python deploy/publish.py

## Release builds (x86_64 and arm64) and the benchmark: init, warm latency, memory, size, API calls,
## cost, cold invocations next to a Python/boto3 peer, and the fan-out over 1/4/8 clusters behind a
## 100 ms latency proxy. BENCH_ARGS="--skip-build --only fanout" runs one part (see bench/bench.py).
bench: setup
	$(VENV)/bin/python bench/bench.py $(BENCH_ARGS)

## The planners at scale (time and peak memory) and scaling-alerts' storm (messages, calls), in a
## release build; then dns-sync's Route53
## requests per run for 20 zones × 2,000 records, counted against moto.
scale: setup
	cargo run --release --locked -p bridgekeeper-tests --bin scale
	cargo run --release --locked -p bridgekeeper-tests --bin route53-requests

## The template as CloudFormation receives it: SAM-expanded for each parameter set in
## tests/template/params.json, then cfn-lint, checkov (skips must be needed), the Rules, and the
## access map: every AWS call the functions make, evaluated with IAM's logic against the policies
## the hub and member stacks deploy (tests/access; its evaluator is tested first), and every SDK
## call in the code listed in the map.
template-check: setup $(SAM_VENV)/.installed
	cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --template template.yaml --region eu-west-1
	$(VENV)/bin/python -m unittest -q tests/access/test_evaluate.py tests/access/test_findings.py tests/access/test_guardrails.py tests/samlocal/test_local_env.py tests/template/test_guided.py
	$(VENV)/bin/python tests/access/operations.py
	$(VENV)/bin/python tests/template/check.py
	$(VENV)/bin/python tests/template/sar.py $$(ls target/template-check/template.yaml.*.json | grep -v noskips)

## For users with an AWS account, never in CI (it calls IAM Access Analyzer with your credentials):
## cfn-policy-validator's `validate` and `check-no-new-access` on every expanded template of
## make template-check; the reference is every action the access maps list.
POLICY_REGION ?= eu-west-1
POLICY_VENV := $(VENV)/policy
policy-check: template-check
	test -x $(POLICY_VENV)/bin/cfn-policy-validator || { python3 -m venv $(POLICY_VENV) && \
	  $(POLICY_VENV)/bin/pip install --quiet cfn-policy-validator==0.0.37; }
	$(VENV)/bin/python tests/access/reference.py > target/template-check/reference-policy.json
	set -e; for t in target/template-check/*.json; do \
	  case $$t in *.noskips.json|*reference-policy.json) continue;; esac; \
	  echo "== $$t"; \
	  $(POLICY_VENV)/bin/cfn-policy-validator validate --template-path $$t --region $(POLICY_REGION); \
	  $(POLICY_VENV)/bin/cfn-policy-validator check-no-new-access --template-path $$t --region $(POLICY_REGION) \
	    --reference-policy target/template-check/reference-policy.json --reference-policy-type identity; \
	done

$(SAM_VENV)/.installed: requirements-package.txt
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check --requirement requirements-package.txt
	touch $@

## sam build from a fresh clone: the arm64 target, cargo-lambda (+ zig) and the SAM CLI, then every
## function's bootstrap in .aws-sam/build/<LogicalId>/ (what sam deploy ships).
package: setup $(SAM_VENV)/.installed
	rustup target add aarch64-unknown-linux-gnu
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --beta-features --no-cached
	@for f in .aws-sam/build/*/bootstrap; do printf '%-45s %s\n' "$$f" "$$(du -h "$$f" | cut -f1)"; file "$$f" | grep -q aarch64 || { echo "$$f is not arm64"; exit 1; }; done

## Every entry point fed generated bad input for FUZZ_MINUTES (default 10), random seed; prints
## cases and failures. `make test` runs the same harness briefly with a fixed seed.
FUZZ_MINUTES ?= 10
fuzz: setup
	FUZZ_SECONDS=$$(( $(FUZZ_MINUTES) * 60 )) cargo test $(CARGO_FLAGS) -p bridgekeeper-tests --test fuzz -- --nocapture bad_input

## Every function's binary as a deploy builds it (not as a test harness): catches what only
## code generation sees, such as a handler future too deep for the default recursion limit.
bins:
	cargo build $(CARGO_FLAGS) --bins

## The code is formatted as cargo fmt leaves it.
fmt-check:
	cargo fmt --all --check

## Clippy on every crate and target, warnings as errors.
clippy:
	cargo clippy $(CARGO_FLAGS) --all-targets -- -D warnings

## The one-name rule (folder, package, binary, SAM Binary, events/<name>/): ../shared/tools/check-layout.
layout:
	@if [ -x ../shared/tools/check-layout ]; then ../shared/tools/check-layout; \
	  else echo "layout: ../shared/tools/check-layout is not here; NOT checked"; fi

## Format, lint, template and layout checks (CI runs these after the tests).
lint: bins fmt-check clippy template-check layout

## What CI runs: every test, every check, every sample through sam local (.ci/run calls these targets one by one).
ci: test lint sam-local

## This list: every target and what its ## lines say.
help:
	@awk '/^## /{doc = doc (doc ? "\n    " : "") substr($$0, 4); next} \
	  /^[a-z][a-z-]*:/{split($$0, t, ":"); if (doc) printf "%-16s %s\n", t[1], doc; doc = ""; next} \
	  /^$$/{doc = ""}' $(MAKEFILE_LIST)

clean-venv:
	rm -rf $(VENV)
