# Everything needs only python3 on the machine: `make venv` builds .venv with the project,
# every extra and the dev tools; the other targets depend on it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test lint typecheck unit storm faults bench clean provider-schema package-constraints

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,container,redis,nats,rabbitmq,postgres,dev]'
	touch $@

demo: venv
	$(BIN)/ecs-detach demo $(if $(APPROVE),--approve --timeout 600)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

test: lint typecheck unit

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
	rm -rf $(VENV) .bench .ecs-detach .mypy_cache .pytest_cache .ruff_cache
