# The two commands a newcomer needs: `make demo` and `make test`. Each sets itself up.
.PHONY: demo test setup lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/eocube demo

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .

# the benchmarks with every reference they compare with (the `bench` extra), quick sizes;
# each prints its own figures (benchmarks/README.md)
bench: setup
	.venv/bin/python -m pip install --quiet -e ".[bench]"
	.venv/bin/python benchmarks/cluster_start.py --repeats 2
	.venv/bin/python benchmarks/zonal.py --quick --repeats 3
	.venv/bin/python benchmarks/change.py --quick
	.venv/bin/python benchmarks/infer.py --quick
	.venv/bin/python benchmarks/overlap.py --mirror 5 --tiles 384 512 --overlaps 16 24 32 48
	.venv/bin/python benchmarks/scaling.py --base-m 640 --chunk 64 --sizes 1 4
