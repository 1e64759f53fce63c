# The two commands a new user needs: `make demo` and `make test` (both set up first, idempotently).
.PHONY: setup demo test bench
setup:
	bash scripts/setup.sh
demo: setup
	scripts/with-env semcomm demo
test: setup
	scripts/with-env python -m pytest -q test
