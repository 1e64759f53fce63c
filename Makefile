# The two commands a new user needs: `make demo` and `make test` (both set up first, idempotently).
.PHONY: setup demo test lint bench
setup:
	bash scripts/setup.sh
demo: setup
	scripts/with-env semcomm demo
test: setup
	scripts/with-env ruff check .
	scripts/with-env python -m pytest -q test
lint: setup
	scripts/with-env ruff check .
