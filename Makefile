.PHONY: run serve test lint format
run:      ## set up and run the product on :5500 (SQLite, no Redis; one web process)
	bin/run
serve:    ## production: WEB_CONCURRENCY web processes (default: CPUs) + the training worker (bin/serve-prod)
	bin/serve-prod
test:     ## set up and run the tests on SQLite and PostgreSQL
	bin/test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
