# Everything needs only python3 on the machine: `make venv` builds .venv with the project,
# every extra and the dev tools; the other targets depend on it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test quick lint typecheck unit coverage mutation storm faults bench clean \
	provider-schema package-constraints screenshots

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,container,webhooks,redis,nats,rabbitmq,postgres,dev]'
	touch $@

demo: venv
	$(BIN)/ecs-detach demo $(if $(APPROVE),--approve --timeout 600)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

# Every test, under coverage.py: branch coverage of handler/, the processes the tests start
# (CLI, worker, storm workers) included ([tool.coverage.run] in pyproject.toml). The floors below
# fail the build (docs/testing.md).
unit: venv
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(MAKE) --no-print-directory coverage

# The floors, on the data of the last `make unit`: 95 % on the safety core, 85 % on handler/.
coverage:
	$(BIN)/coverage report --include='handler/*'
	@for area in 'handler/core/*' \
		'handler/functions/detach.py,handler/functions/poll.py,handler/functions/jobs.py' \
		'handler/guards/idempotency.py,handler/guards/blast.py'; do \
		printf '%-80s ' "$$area (floor 95 %)"; \
		$(BIN)/coverage report --include="$$area" --format=total --fail-under=95 || exit 1; \
	done
	@printf '%-80s ' 'handler/ (floor 85 %)'; $(BIN)/coverage report --format=total --fail-under=85

test: lint typecheck unit

# Daily work (under a minute): the deterministic tier and the unit tests, without the tests
# marked slow and without coverage. `make test` runs everything (CI).
QUICK := tests/functions tests/core tests/store tests/sources tests/security tests/emulator tests/cloud \
	tests/test_errors.py tests/test_settings.py
quick: venv
	$(BIN)/pytest -q -m 'not slow' $(QUICK)

# Mutation testing of the safety core with mutmut ([tool.mutmut] in pyproject.toml) against the
# fast tier; not part of `make test`: about 6 minutes here. Score and survivors: docs/testing.md.
# A fresh run each time (mutmut keeps results of functions it thinks unchanged, not of tests).
mutation: venv
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(or $(MUTATION_JOBS),2)
	$(BIN)/mutmut results

# docs/img/console-*.png, the console's screenshots, made anew by its browser test.
screenshots: venv
	ECS_DETACH_SCREENSHOTS=docs/img $(BIN)/pytest -q tests/console/test_console_browser.py

# handler/local/package-constraints.txt: the versions of the FunctionGraph package, renewed (PyPI).
package-constraints: venv
	$(BIN)/python -m handler.local.package

# tests/infra/schema/huaweicloud-<version>.json.gz, the provider schema the Terraform tests check
# against: after changing the pinned provider version or the resource types (needs the registry).
provider-schema: venv
	cd infra/terraform && terraform init -backend=false -input=false >/dev/null \
		&& terraform providers schema -json | gzip > ../../.provider-schema.json.gz
	$(BIN)/python -m tests.infra.schema.trim .provider-schema.json.gz
	rm -f .provider-schema.json.gz

# The storm test (docs/resilience.md); STORM_TOPICS=redis://… (or nats, amqp) for a broker.
storm: venv
	$(BIN)/python -m bench.storm --events 10000 --servers 2000 --workers 4 $(if $(STORM_TOPICS),--topics $(STORM_TOPICS))

# The full fault suite (docs/resilience.md): brokers of its own killed -9 and restarted, `up` and the
# worker killed, 200 requests per backend; FAULTS_ARGS="--runs 3 --backends nats,amqp" to narrow.
faults: venv
	$(BIN)/python -m tests.faults $(FAULTS_ARGS)

# The benchmark against the official SDK (docs/performance.md): the SDK goes to .bench/sdk only.
bench: venv
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .bench .ecs-detach .mypy_cache .pytest_cache .ruff_cache .coverage .coverage.* mutants
