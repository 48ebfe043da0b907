# Both entry points bootstrap .venv idempotently: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench clean run-cluster

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# make run: a node on ./var (LMDB) at 127.0.0.1:7400, and its log as tlog-tiles at
# http://127.0.0.1:7401; the first start seeds the demo network through the gRPC API
# (demo-seed is idempotent), then the node keeps serving in the foreground until Ctrl-C.
run: $(STAMP)
	@test -f var/node.key || $(VENV)/bin/carbonledger init var --origin demo.carbonledger.example/log \
		--authority-id 12100000MA0REG001X --authority-name "National Carbon Data Registry (demo)"
	@addr=127.0.0.1:7400; \
	$(VENV)/bin/carbonledger serve var --listen $$addr --tiles-http 127.0.0.1:7401 --log-level warning & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid; exit 0' INT TERM; \
	$(VENV)/bin/carbonledger demo-seed --dir var --node $$addr --wait 30 --check-label \
		--cli $(VENV)/bin/carbonledger || { kill -TERM $$pid 2>/dev/null; wait $$pid; exit 1; }; \
	echo; echo "node serving on $$addr (ledger in var/); Ctrl-C stops it"; \
	wait $$pid

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m pip install -q --no-deps merkletools
	$(PY) -m loadtests.bench_merkle

clean:
	rm -rf $(VENV) var

# Three etcd members and three replicating nodes on loopback (see README, Several nodes).
run-cluster: $(STAMP)
	$(PY) -m node.cluster_run var/cluster
