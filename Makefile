.PHONY: run test lint format
run:      ## set up and run the product on :5500 (SQLite, no Redis)
	bin/run
test:     ## set up and run the tests on SQLite and PostgreSQL
	bin/test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
