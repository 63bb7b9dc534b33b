# The two commands: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= $(or $(HIS_PORT),8000)

.PHONY: run test lint format install translations i18n-update lock clean-venv bench bench-quick bench-growth

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when the dependency list or the lock changes.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

install: $(STAMP) translations

translations: $(STAMP)
	@$(BIN)/pybabel compile --statistics -d his/translations

# make run: migrate the embedded SQLite database, load the demo province on first start, serve.
# The e-prescription sender, the FHIR bulk export worker, the MLLP listener, the HL7
# dispatcher and the claim sender run beside the server and stop when it stops (--with-parent).
run: install
	@mkdir -p instance && chmod 700 instance
	@test -s instance/secret_key || (umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))' > instance/secret_key)
	@export HIS_SECRET_KEY="$$(cat instance/secret_key)" HIS_COOKIE_SECURE="$${HIS_COOKIE_SECURE:-false}" HIS_LOG_FORMAT="$${HIS_LOG_FORMAT:-console}"; \
	  $(BIN)/his db upgrade && \
	  $(BIN)/his demo --if-empty && \
	  $(BIN)/his fhir rebuild --if-empty && \
	  { $(BIN)/his eprescription send --loop --with-parent & } && \
	  { $(BIN)/his fhir export-worker --loop --with-parent & } && \
	  { $(BIN)/his hl7 listen --with-parent & } && \
	  { $(BIN)/his hl7 dispatch --loop --with-parent & } && \
	  { $(BIN)/his claims send --loop --with-parent & } && \
	  exec $(BIN)/his serve

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist worksteal

# Benchmarks on the local PostgreSQL (HIS_BENCH_POSTGRES_URL to change it): every case beside
# its baseline from the same run, written to bench/results/ (bench/README.md). The bench extra
# (matplotlib, for the growth plots) is installed here only: `make test` does not need it.
BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	@touch $@

# --reuse: a province his_bench_<N> loaded (and FHIR-projected) by an earlier run is used again;
# the first run on a machine loads and projects it (minutes more). Without it: suite.py --quick.
bench-quick: install $(BENCH_STAMP)
	$(BIN)/python bench/suite.py --quick --reuse

# The full suite on 1,000,000 patients, then the growth from 10,000 to 1,000,000 (reusing the
# suite's province of 1,000,000).
bench: install $(BENCH_STAMP)
	$(BIN)/python bench/suite.py --reuse
	$(BIN)/python bench/growth.py --reuse

# Growth only: BENCH_SIZES=10000,100000 make bench-growth
bench-growth: install $(BENCH_STAMP)
	$(BIN)/python bench/growth.py --reuse $(if $(BENCH_SIZES),--sizes $(BENCH_SIZES))

# kill -9 under load (bench/faults.py): gunicorn workers and master, the MLLP listener and the
# dispatcher, on a fresh PostgreSQL database his_faults, then on SQLite (bench/results/faults-*.json).
.PHONY: bench-faults
bench-faults: install
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/faults.py --sqlite

# The long schemathesis run against the OpenAPI document (make test runs a bounded one):
# FUZZ_EXAMPLES valid and as many invalid cases per operation, FUZZ_BACKEND sqlite or
# postgresql (HIS_BENCH_POSTGRES_URL); writes bench/results/fuzz-api*.json.
.PHONY: fuzz
fuzz: install
	$(BIN)/python bench/fuzz_api.py --examples $(or $(FUZZ_EXAMPLES),25) --backend $(or $(FUZZ_BACKEND),sqlite)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-extract the user-visible strings and merge them into the Vietnamese catalogue.
i18n-update: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output -o /tmp/his-messages.pot .
	$(BIN)/pybabel update -i /tmp/his-messages.pot -d his/translations --ignore-obsolete --no-fuzzy-matching

# Re-resolve the dependency ranges of pyproject.toml into constraints.txt (the lock).
lock:
	rm -rf /tmp/his-lock-venv && $(PYTHON) -m venv /tmp/his-lock-venv
	/tmp/his-lock-venv/bin/python -m pip install --quiet --upgrade pip
	/tmp/his-lock-venv/bin/python -m pip install --quiet -e '.[test]'
	{ echo '# The lock: exact versions for a reproducible install (`make lock` regenerates it).'; \
	  /tmp/his-lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^his=='; } > constraints.txt
	rm -rf /tmp/his-lock-venv

clean-venv:
	rm -rf $(VENV)
