"""The FastAPI app: one engine for the process's life, the API routers, the listener page."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.routing import Match

from tts_plugin.engine.engine import OrpheusEngine
from tts_plugin.engine.remote_generator import RemoteTokenGenerator

from . import http_api, rtc, ws_api
from .auth import AccessGuard
from .compat import chatterbox_sse, chatterbox_ws, orpheus_fastapi
from .config import ServerSettings
from .errors import BodySizeLimit, install_error_handlers
from .lifecycle import ConnectionScopes, watch_engine, watch_vllm
from .livekit_token import LiveKitTokenConfig, livekit_token_router
from .request_id import RequestIdMiddleware
from .rtc import RtcListeners
from .slow_clients import SendTimeout
from .state import ServerState

log = logging.getLogger("orpheus.server")


class WebPage(StaticFiles):
    """The page's own files only; ``node_modules`` stays private except livekit-client's dist.

    Mounted at "/", it would answer "GET /v1/audio/speech" with 404: say 405 for API paths instead."""

    async def get_response(self, path: str, scope):
        if Path(path).parts[:1] in (("node_modules",), ("package.json",), ("package-lock.json",)):
            raise HTTPException(404, "Not Found")
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            allowed = _methods_for(scope)
            if exc.status_code == 404 and allowed:
                raise HTTPException(405, "Method Not Allowed", headers={"Allow": ", ".join(allowed)}) from None
            raise


def _methods_for(scope) -> list[str]:
    """Methods of the API routes that match this path (the request used another one)."""
    allowed: list[str] = []
    for route in scope["app"].router.routes:
        methods = getattr(route, "methods", None)
        if methods and route.matches({**scope, "type": "http"})[0] is Match.PARTIAL:
            allowed.extend(sorted(methods))
    return allowed


def create_app(settings: ServerSettings, engine: OrpheusEngine | None = None, *, demo: bool = False) -> FastAPI:
    """With ``engine`` None, the lifespan starts one from settings (and closes it at shutdown).
    ``demo``: the model has random weights; /health and the page say so."""
    state = ServerState(settings, demo=demo)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = engine is None
        log.info("loading model %s", settings.model)
        loaded = await OrpheusEngine.start(settings) if owned else engine
        if settings.warmup:
            await loaded.warmup()
        state.engine = loaded
        state.rtc = RtcListeners(state)
        watchers = [asyncio.create_task(watch_engine(state, lambda code: state.exit_server(code)), name="engine-watch")]
        if isinstance(loaded.generator, RemoteTokenGenerator):
            watchers.append(asyncio.create_task(watch_vllm(loaded.generator, settings.vllm_health_interval_s),
                                                name="vllm-watch"))
        log.info("ready: voices %s", ", ".join(loaded.voices))
        try:
            yield
        finally:
            for watcher in watchers:
                watcher.cancel()
                with suppress(asyncio.CancelledError):
                    await watcher
            await state.rtc.aclose()
            state.engine = None
            if owned:
                await loaded.aclose()

    app = FastAPI(title="orpheus-rtc TTS", version="0.1.0", lifespan=lifespan,
                  description="Streaming Orpheus speech: OpenAI-compatible HTTP, SSE, WebSocket, WebRTC.")
    app.state.server = state
    install_error_handlers(app)
    # outermost last: refuse strangers before reading their bodies, bodies before routing
    app.add_middleware(SendTimeout, timeout_s=settings.send_timeout_s)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(ConnectionScopes, state=state)
    app.add_middleware(AccessGuard, keys=settings.api_keys, allowed_origins=settings.allowed_origins)
    app.add_middleware(RequestIdMiddleware)  # outermost: every response gets the id, refusals too
    app.include_router(http_api.router)
    app.include_router(ws_api.router)
    app.include_router(rtc.router)
    app.include_router(livekit_token_router(LiveKitTokenConfig.from_env(  # GET /v1/livekit/token (listener tokens)
        room_pattern=settings.livekit_token_rooms, max_ttl_s=settings.livekit_token_max_ttl_s,
        per_minute=settings.livekit_token_per_minute, agent_name=settings.agent_name)))
    for adapter in (orpheus_fastapi, chatterbox_sse, chatterbox_ws):  # other servers' APIs (README)
        app.include_router(adapter.router)
    vendor = settings.web_dir / "node_modules" / "livekit-client" / "dist"
    if vendor.is_dir():
        app.mount("/vendor/livekit-client", StaticFiles(directory=vendor), name="livekit-client")
    if settings.web_dir.is_dir():
        app.mount("/", WebPage(directory=settings.web_dir, html=True), name="web")
    return app
