# Thin wrappers: the real work is in scripts/ so it also runs where make is missing.
.PHONY: run test ci bench

run:
	sh scripts/run.sh

test:
	sh scripts/test.sh $(ARGS)

ci:
	bash .ci/run

bench:
	sh scripts/setup.sh
	.venv/bin/python bench/bulk_csv.py $(ARGS)
