# Two commands: `make demo` runs the whole system; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install system-packages smoke lint typecheck check requirements clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The Debian packages the tests and the demo drive (dcmtk, chromium, ...): one
# list, in scripts/system-packages, which .ci/run calls too.
system-packages:
	scripts/system-packages

# The OHIF viewer, prebuilt: npm's @ohif/app ships dist/.  package-lock.json pins that
# one package by version and integrity hash and lists none of its dependencies (only
# its own build needs them), so `npm ci` fetches one tarball and runs no scripts.
# (Its "engines: node >= 24" is for that build too: npm warns, nothing runs in node.)
NODE_STAMP := node_modules/.installed

$(NODE_STAMP): package-lock.json package.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $(NODE_STAMP)

# Then copy dist/ to VIEWER_DIR (var/viewer/) rewritten for /viewer/: viewer/build.py,
# which stops with an error if the bundle is not as it expects, and does nothing if
# the prepared copy is current.
install: system-packages $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m viewer.build

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  Starting (Procfile): web (gunicorn), Celery worker, Celery beat, DICOM listener, HL7 listener, demo PACS."
	@echo "  Web:       http://127.0.0.1:8000/  (API docs: /api/docs/, admin: /admin/)"
	@echo "  DICOM:     AE title TELERAD on 127.0.0.1:11112 (C-ECHO, C-STORE)"
	@echo "  HL7:       MLLP on 127.0.0.1:2575 (ORM^O01, OMI^O23, ADT^A08/A40; facility ids in the README)"
	@echo "  PACS:      Orthanc as St. Mary's PACS, AE DEMOPACS on 127.0.0.1:4242 (priors of DEMO-PAT-1)"
	@echo "  Images:    DICOMweb at /dicomweb/, the OHIF viewer at /viewer/ ('Open images' on the worklist)"
	@echo "  Logins:    admin / dr.chen / staff.stmary / superuser, password demo-pass-2026"
	@echo "  On shift:  $(BIN)/python manage.py on_shift  (whom to sign in as)"
	@echo "  Ctrl-C stops them all together."
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Runs `make demo` as the README says, sends a study with dcmtk, sees it offered
# on a reader's worklist, stops it with Ctrl-C (SIGINT) and checks nothing is left.
smoke: install
	$(BIN)/python scripts/smoke_demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy .

check: lint typecheck test

# requirements.txt is generated from pyproject.toml: exact pins, one source of truth.
requirements: install
	$(BIN)/pip-compile --quiet --strip-extras --extra dev --no-emit-index-url \
		--no-emit-find-links -o requirements.txt pyproject.toml

clean:
	rm -rf $(VENV) var
