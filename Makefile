# The two commands a new user needs are `make up` and `make test` (see README.md).
# Every target delegates to a script in localenv/ (the local environment, not part of the product).
.PHONY: up test down status venv toolchain cluster lint unit integration e2e bench

up:            ## whole set-up (venv, toolchain, local cluster, PostgreSQL) then `pulumi up` on stack local
	./localenv/up.sh

test:          ## every test tier: lint, unit, integration (real PostgreSQL), e2e (real engine + cluster)
	./localenv/test.sh

down:          ## stop the local cluster and PostgreSQL started by `make up` / `make test`
	./localenv/cluster.sh down

status:
	./localenv/cluster.sh status

venv:
	./localenv/venv.sh

toolchain:
	./localenv/toolchain.sh

cluster:
	./localenv/cluster.sh up

lint: venv
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy .

unit: venv
	.venv/bin/pytest tests/unit

integration: venv toolchain   ## real PostgreSQL; the toolchain for the no-cluster YAML-host tests
	.venv/bin/pytest tests/integration

e2e:
	./localenv/test.sh e2e

bench:
	./bench/run.sh
