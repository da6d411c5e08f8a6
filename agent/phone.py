"""Phone calls into the agent through LiveKit's SIP bridge (livekit-sip).

``python -m agent phone`` runs the phone side of a one-machine set-up until Ctrl-C: Redis,
livekit-server with Redis (``livekit-redis.yaml``), livekit-sip (``sip/livekit-sip.yaml``), then
creates the inbound trunk (``sip/inbound-trunk.json``) and the dispatch rule
(``sip/dispatch-rule.json``) bound to that trunk. Run the TTS server and the agent worker beside it.

``python -m agent phone --provision-only`` only creates the trunk and the rule, on the LiveKit server
named by ``LIVEKIT_URL``/``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET`` (a deployment that runs its own
Redis, LiveKit and SIP bridge). Either way the rule names the trunk's id: a rule with no trunk
matches every call that reaches the bridge, whatever number it dials and wherever it comes from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("orpheus.phone")


class PhoneSettings(BaseSettings):
    """
    The phone side of a one-machine set-up (Redis, livekit-server with Redis, livekit-sip, the trunk and
    its dispatch rule), until Ctrl-C. Every flag is also an ORPHEUS_PHONE_ environment variable.
    """

    model_config = SettingsConfigDict(env_prefix="ORPHEUS_PHONE_", extra="ignore", cli_kebab_case=True,
                                      cli_implicit_flags=True)

    livekit_config: Path = Field(ROOT / "livekit-redis.yaml", description="livekit-server config with redis set")
    sip_config: Path = Field(ROOT / "sip" / "livekit-sip.yaml", description="livekit-sip config")
    trunk: Path = Field(ROOT / "sip" / "inbound-trunk.json", description="CreateSIPInboundTrunkRequest JSON")
    dispatch_rule: Path = Field(ROOT / "sip" / "dispatch-rule.json", description="CreateSIPDispatchRuleRequest JSON")
    bin_dir: Path = Field(Path(sys.executable).parent, description="where livekit-server and livekit-sip are")
    provision_only: bool = Field(False, description="only create the trunk and the rule (LIVEKIT_URL's server)")


# --- the trunk and the rule ------------------------------------------------------------------

def load_trunk_request(path: Path):
    from google.protobuf import json_format
    from livekit.protocol import sip

    return json_format.Parse(Path(path).read_text(), sip.CreateSIPInboundTrunkRequest())


def load_dispatch_rule_request(path: Path):
    from google.protobuf import json_format
    from livekit.protocol import sip

    return json_format.Parse(Path(path).read_text(), sip.CreateSIPDispatchRuleRequest())


@dataclass(frozen=True)
class Provisioned:
    trunk_id: str
    dispatch_rule_id: str


async def provision(lkapi, trunk_request, rule_request) -> Provisioned:
    """Create the inbound trunk, then the dispatch rule bound to it (what ``lk sip inbound create``
    and ``lk sip dispatch create`` do, plus the binding). Trunks and rules of the same names are
    replaced, so running it again leaves one of each."""
    from livekit import api

    for trunk in (await lkapi.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items:
        if trunk.name == trunk_request.trunk.name:
            await lkapi.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=trunk.sip_trunk_id))
    for rule in (await lkapi.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items:
        if rule.name == rule_request.dispatch_rule.name:
            await lkapi.sip.delete_dispatch_rule(
                api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=rule.sip_dispatch_rule_id))
    trunk = await lkapi.sip.create_inbound_trunk(trunk_request)
    bound = type(rule_request)()
    bound.CopyFrom(rule_request)
    del bound.dispatch_rule.trunk_ids[:]
    bound.dispatch_rule.trunk_ids.append(trunk.sip_trunk_id)
    rule = await lkapi.sip.create_dispatch_rule(bound)
    return Provisioned(trunk.sip_trunk_id, rule.sip_dispatch_rule_id)


# --- readiness probes --------------------------------------------------------------------------

def sip_options(host: str, port: int, timeout_s: float = 1.0) -> int | None:
    """Send a SIP OPTIONS over UDP; the response's status code, or None if nothing answered.
    livekit-sip's health port says 429 whenever the CPU is busy, while it still takes calls:
    an answered OPTIONS is the readiness that matters to a caller."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.bind((host, 0))
        local_host, local_port = sock.getsockname()
        tag = secrets.token_hex(6)
        request = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {local_host}:{local_port};branch=z9hG4bK{tag};rport\r\n"
                   "Max-Forwards: 70\r\n"
                   f"From: <sip:probe@{local_host}>;tag={tag}\r\n"
                   f"To: <sip:{host}:{port}>\r\n"
                   f"Call-ID: {tag}@{local_host}\r\n"
                   "CSeq: 1 OPTIONS\r\n"
                   "Content-Length: 0\r\n\r\n")
        try:
            sock.sendto(request.encode(), (host, port))
            reply, _ = sock.recvfrom(65535)
        except OSError:  # timeout, or ICMP port unreachable while the bridge starts
            return None
    status_line = reply.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) >= 2 and status_line[1].isdigit() else None


def redis_ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_until(ready, process: subprocess.Popen, what: str, log_path: Path, deadline_s: float = 60) -> None:
    """Poll ``ready()`` until true; fail with the log's tail if the process exits or time runs out."""
    end = time.monotonic() + deadline_s
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}):\n{log_path.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > end:
            raise RuntimeError(f"{what} not ready after {deadline_s} s:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def redis_command(address: str) -> list[str]:
    """redis-server on ``address`` only, nothing saved to disk (LiveKit keeps no state worth keeping)."""
    host, port = host_port(address)
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server not installed (Debian: apt-get install redis-server; `make system-deps`)")
    return [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
            "--protected-mode", "yes"]


# --- python -m agent phone -----------------------------------------------------------------------

def _start(command: list[str], log_path: Path, cwd: Path) -> subprocess.Popen:
    # The children get this environment minus LiveKit's credentials (their configs name their own).
    with log_path.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                env={k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")})


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _provision_on(url: str, key: str, secret: str, settings: PhoneSettings) -> Provisioned:
    from livekit import api

    async with api.LiveKitAPI(url, key, secret) as lkapi:
        return await provision(lkapi, load_trunk_request(settings.trunk),
                               load_dispatch_rule_request(settings.dispatch_rule))


def run_stack(settings: PhoneSettings) -> int:
    livekit_config = yaml.safe_load(settings.livekit_config.read_text())
    sip_config = yaml.safe_load(settings.sip_config.read_text())
    (key, secret), = livekit_config["keys"].items()
    redis_address = livekit_config["redis"]["address"]
    if sip_config["redis"]["address"] != redis_address:
        raise SystemExit(f"{settings.sip_config} and {settings.livekit_config} name different Redis servers")
    logs = ROOT / ".cache" / "phone"
    logs.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen] = []
    stop = threading.Event()
    try:
        redis = _start(redis_command(redis_address), logs / "redis.log", logs)
        started.append(redis)
        wait_until(lambda: redis_ping(*host_port(redis_address)), redis, "redis-server", logs / "redis.log")
        livekit = _start([str(settings.bin_dir / "livekit-server"), "--config", str(settings.livekit_config)],
                         logs / "livekit-server.log", logs)
        started.append(livekit)
        http_url = f"http://127.0.0.1:{livekit_config['port']}"
        wait_until(lambda: _http_ok(http_url), livekit, "livekit-server", logs / "livekit-server.log")
        bridge = _start([str(settings.bin_dir / "livekit-sip"), "--config", str(settings.sip_config)],
                        logs / "livekit-sip.log", logs)
        started.append(bridge)
        sip_host = sip_config.get("listen_ip") or "127.0.0.1"
        sip_port = int(sip_config.get("sip_port", 5060))
        wait_until(lambda: sip_options(sip_host, sip_port) == 200, bridge, "livekit-sip", logs / "livekit-sip.log")
        done = asyncio.run(_provision_on(http_url, key, secret, settings))
        trunk = load_trunk_request(settings.trunk).trunk
        print(f"phone: SIP sip:{list(trunk.numbers)[0] if trunk.numbers else '<number>'}@{sip_host}:{sip_port} "
              f"-> trunk {done.trunk_id} -> rule {done.dispatch_rule_id} -> agent "
              f"{', '.join(a.agent_name for a in load_dispatch_rule_request(settings.dispatch_rule).dispatch_rule.room_config.agents)}; "
              f"LiveKit {http_url}; logs in {logs}. Ctrl-C stops.", flush=True)

        def _on_signal(*_):
            stop.set()
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        while not stop.is_set():
            for process in started:
                if process.poll() is not None:
                    print(f"{process.args[0]} exited ({process.returncode}); logs in {logs}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        for process in reversed(started):
            _stop(process)


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def phone(settings: PhoneSettings) -> int:
    from .server.livekit_token import LiveKitSettings

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.provision_only:
        livekit = LiveKitSettings()
        if not (livekit.url and livekit.api_key and livekit.api_secret):
            print("error: --provision-only needs LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET", file=sys.stderr)
            return 2
        done = asyncio.run(_provision_on(livekit.url, livekit.api_key, livekit.api_secret.get_secret_value(),
                                         settings))
        print(f"trunk {done.trunk_id}, dispatch rule {done.dispatch_rule_id} (bound to the trunk)")
        return 0
    return run_stack(settings)
