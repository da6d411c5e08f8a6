"""Prompt ids -> audio token ids from a remote ``vllm serve`` (its OpenAI-compatible completions).

Scale-out without a home-made scheduler: TTS server replicas keep SNAC decoding and the audio
transports, and send generation to vLLM's own server (one, or several behind whatever balances
HTTP). Same interface as ``TokenGenerator``: one async generator of token-id batches per request,
closed to abort. Closing drops the HTTP stream, and vLLM aborts a request whose client went away.

The request carries the prompt as token ids and asks for ``return_token_ids``, so no text is
detokenized or re-tokenized on either side. The slot constraint works when the vLLM server was
started with ``--logits-processors tts_plugin.engine.logits:SlotConstraint`` (orpheus-rtc
installed next to vLLM); without it the flag is ignored and the frame assembler drops bad frames.

Reachability: ``probe()`` (called periodically by the server's watchdog) asks vLLM's ``/health``;
``unreachable`` says why the server cannot be used right now, and clears once it answers again.
A request that cannot even connect marks it at once, without waiting for the next probe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp

from ..settings import EngineSettings
from .generator import GenerationError, SamplingOptions
from .logits import SLOT_CONSTRAINT_ARG
from .profiles import END_OF_SPEECH

log = logging.getLogger(__name__)


class RemoteTokenGenerator:
    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, constrain_tokens: bool = True,
                 connect_timeout_s: float = 10.0, health_timeout_s: float = 3.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.constrain_tokens = constrain_tokens
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # No total timeout: a long utterance streams for minutes; a stalled socket still fails.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=60)
        self._health_timeout = aiohttp.ClientTimeout(total=health_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._running = 0
        self.unreachable: str | None = None  # why the server cannot be used now; None while it answers

    @classmethod
    async def connect(cls, settings: EngineSettings) -> RemoteTokenGenerator:
        """Wait (up to ``vllm_wait_s``) for the server to be up, check that it serves the model."""
        api_key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        generator = cls(settings.vllm_url, settings.vllm_model or settings.model, api_key=api_key,
                        constrain_tokens=settings.constrain_tokens, health_timeout_s=settings.vllm_health_timeout_s)
        try:
            served = await generator._served_models(settings.vllm_wait_s)
        except BaseException:
            await generator.aclose()
            raise
        if generator.model not in served:
            await generator.aclose()
            raise GenerationError(f"vLLM server {generator.base_url} serves {served}, not {generator.model!r} "
                                  "(set ORPHEUS_VLLM_MODEL to its served model name)")
        return generator

    async def _served_models(self, wait_s: float) -> list[str]:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                async with self._http().get(f"{self.base_url}/v1/models") as response:
                    if response.status != 200:
                        raise GenerationError(f"vLLM server {self.base_url} answered {response.status} to /v1/models")
                    return [m["id"] for m in (await response.json())["data"]]
            except aiohttp.ClientConnectionError as exc:  # not up yet: a deployment may start us first
                if time.monotonic() >= deadline:
                    raise GenerationError(f"vLLM server {self.base_url} unreachable: {exc}") from exc
                log.info("waiting for the vLLM server at %s", self.base_url)
                await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
            except aiohttp.ClientError as exc:
                raise GenerationError(f"vLLM server {self.base_url} failed: {exc}") from exc

    async def probe(self) -> bool:
        """One health check (vLLM's ``/health``: 200 while its engine runs); updates ``unreachable``."""
        try:
            async with self._http().get(f"{self.base_url}/health", timeout=self._health_timeout) as response:
                reason = None if response.status == 200 else f"answered {response.status} to /health"
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._set_unreachable(reason)
        return reason is None

    def _set_unreachable(self, reason: str | None) -> None:
        if reason and not self.unreachable:
            log.warning("vLLM server %s unreachable (%s): refusing new streams until it answers", self.base_url, reason)
        elif self.unreachable and not reason:
            log.info("vLLM server %s answers again", self.base_url)
        self.unreachable = reason

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    def request_body(self, prompt_ids: list[int], options: SamplingOptions) -> dict:
        body = {
            "model": self.model, "prompt": prompt_ids, "stream": True, "return_token_ids": True,
            "max_tokens": options.max_tokens, "temperature": options.temperature, "top_p": options.top_p,
            "repetition_penalty": options.repetition_penalty, "stop_token_ids": [END_OF_SPEECH],
            "skip_special_tokens": False,
        }
        if options.seed is not None:
            body["seed"] = options.seed
        if self.constrain_tokens:
            body["vllm_xargs"] = {SLOT_CONSTRAINT_ARG: True}
        return body

    async def generate(self, prompt_ids: list[int], options: SamplingOptions,
                       request_id: str | None = None) -> AsyncIterator[list[int]]:
        url = f"{self.base_url}/v1/completions"
        headers = {"X-Request-Id": request_id or uuid.uuid4().hex}
        self._running += 1
        try:
            async with self._http().post(url, json=self.request_body(prompt_ids, options), headers=headers) as response:
                if response.status != 200:
                    detail = (await response.text())[:300]
                    raise GenerationError(f"vLLM server answered {response.status}: {detail}")
                async for line in response.content:  # server-sent events, one per line
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:
                        raise GenerationError(f"vLLM server error: {event['error']}")
                    token_ids = event["choices"][0].get("token_ids")
                    if token_ids:
                        yield token_ids
        except aiohttp.ClientError as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):  # nothing listens: no need to wait for a probe
                self._set_unreachable(f"{type(exc).__name__}: {exc}")
            raise GenerationError(f"vLLM server {self.base_url} failed: {exc}") from exc
        finally:
            self._running -= 1

    @property
    def running_requests(self) -> int:
        """Requests of this process still streaming (vLLM's own count covers every replica)."""
        return self._running

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
