"""Errors as clear 4xx JSON in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

FastAPI's default 422 lists pydantic internals; clients get one readable sentence per problem here.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from tts_plugin.protocol import ErrorCode, framework_error_code

from .compat import foreign


class ApiError(Exception):
    """An HTTP error answer; its status is the code's (``tts_plugin.protocol.ErrorCode``) unless given."""

    def __init__(self, code: ErrorCode, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None, status: int | None = None):
        super().__init__(message)
        self.code, self.message, self.param, self.headers = code, message, param, headers
        self.status = status or code.status


def error_body(message: str, *, code: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def describe_validation_error(err: dict) -> tuple[str, str | None]:
    """One pydantic error -> ("field: reason", field)."""
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    field = ".".join(loc) or None
    kind = err.get("type", "")
    if kind == "json_invalid":
        return f"malformed JSON: {err.get('ctx', {}).get('error', 'cannot parse the body')}", None
    if kind == "missing" and field is None:
        return 'the body is missing: send a JSON object with at least "input"', None
    if kind == "missing":
        return f"{field}: field required", field
    if kind == "extra_forbidden":
        return foreign.describe(field) or f"{field}: unknown field", field
    if kind in ("model_attributes_type", "dict_type") and not loc:
        return "the body must be a JSON object", None
    message = err.get("msg", "invalid value").removeprefix("Value error, ")
    return (f"{field}: {message}" if field else message), field


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        kind = ("server_error" if exc.status >= 500 else "rate_limit_error" if exc.status == 429
                else "invalid_request_error")
        return JSONResponse(error_body(exc.message, code=exc.code, param=exc.param, kind=kind),
                            status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        described = [describe_validation_error(e) for e in exc.errors()]
        message = "; ".join(m for m, _ in described) or "invalid request"
        param = next((p for _, p in described if p), None)
        return JSONResponse(error_body(message, code=ErrorCode.BAD_REQUEST, param=param),
                            status_code=ErrorCode.BAD_REQUEST.status)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RecursionError):  # FastAPI could not parse the body: "[[[[..."
            return JSONResponse(error_body("malformed JSON: nested too deeply", code=ErrorCode.BAD_JSON),
                                status_code=ErrorCode.BAD_JSON.status)
        return JSONResponse(error_body(str(exc.detail), code=framework_error_code(exc.status_code)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a body passes the limit; whatever the app answers, the client gets 413."""


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` (413) before they are read into memory, whether
    their size is declared (Content-Length) or only seen while they arrive (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        seen = 0
        too_large = False
        started = False

        async def limited_receive():
            nonlocal seen, too_large
            if too_large:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message):
            nonlocal started
            if too_large:  # the app's answer to a body it could not read (FastAPI says 400): ours instead
                return
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        if too_large and not started:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        message = f"request body is larger than {self.max_bytes} bytes"
        body = json.dumps(error_body(message, code=ErrorCode.TOO_LARGE)).encode()
        await send({"type": "http.response.start", "status": ErrorCode.TOO_LARGE.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
