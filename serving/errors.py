"""Every error is JSON with a clear message: ``{"error": "..."}`` (plus ``detail`` for validation errors).

Clients never see internals: no stack trace, exception text, host, port or file path. Unhandled
exceptions are logged with the request id and answered ``500 {"error": "internal error", "request_id": ...}``;
a store that cannot be reached is a ``503`` with ``Retry-After`` that names the store in product terms
("the search index is unreachable") and carries the request id, while the cause is logged under that id.
Every 5xx body carries the request id.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout, TooManyRequests
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from serving.multipart import MultipartError
from socialpulse.media import EmptyMedia, MediaError, MediaTooLarge, UnsupportedMediaType

log = logging.getLogger("serving")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")

#: seconds a client should wait before retrying a 503 of an unreachable store (a restart takes a few)
RETRY_AFTER_S = 5
#: ... and of a busy one (the request was shed: too many were already waiting for the store)
BUSY_RETRY_AFTER_S = 1


class ApiError(Exception):
    """An error answered as ``status_code`` with ``{"error": message, **extra}`` (and ``headers``)."""

    def __init__(self, status_code: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers
        self.extra = extra


class StoreUnavailable(ApiError):
    """503: a store the request needs cannot be reached. The message names the store in product terms
    only; the cause (``__cause__``) is logged with the request id, never sent."""

    def __init__(self, store: str):
        super().__init__(503, f"the {store} is unreachable; retry in a few seconds",
                         headers={"Retry-After": str(RETRY_AFTER_S)})
        self.store = store


class StoreBusy(ApiError):
    """503: too many requests already wait for the store; this one is shed at once (``Retry-After`` 1 s)
    rather than queued behind them, so an overload answers fast instead of timing everything out."""

    def __init__(self, store: str):
        super().__init__(503, f"the {store} is busy; retry in a second", headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})
        self.store = store


def is_unreachable(exc: BaseException) -> bool:
    """Whether an error means a store could not be reached or went away (503, retry later) rather than a
    bug (500): refused or dropped connections, timeouts, a Postgres shutting down or a full pool."""
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, psycopg.OperationalError,
                            PoolTimeout, ConnectionError, TimeoutError))


async def call_store(store: str, fn, /, *args: Any) -> Any:
    """Run a blocking store call off the event loop. The one place where a store failure becomes a 503:
    an unreachable store raises ``StoreUnavailable(store)``, a store with too many requests already waiting
    ``StoreBusy(store)``; any other error stays a bug (500)."""
    try:
        return await run_in_threadpool(fn, *args)
    except Exception as exc:
        if isinstance(exc, TooManyRequests):
            raise StoreBusy(store) from exc
        if is_unreachable(exc):
            raise StoreUnavailable(store) from exc
        raise


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(status_code: int, message: str, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status_code, headers=headers)


# --- validation errors ----------------------------------------------------------------------------


def _loc_str(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "request"


def _clean_msg(msg: str) -> str:
    # pydantic prefixes errors raised by our validators with "Value error, "
    return msg.removeprefix("Value error, ")


def validation_details(errors: Iterable[Any], prefix: Sequence[Any] = ()) -> list[dict]:
    return [{"loc": [*prefix, *e.get("loc", ())], "msg": _clean_msg(str(e.get("msg", "")))} for e in errors]


def validation_error(errors: Iterable[Any], prefix: Sequence[Any] = ()) -> ApiError:
    """A 422 ApiError from pydantic errors: a one-line summary plus each error's location and message."""
    detail = validation_details(errors, prefix)
    if not detail:
        return ApiError(422, "invalid request")
    # the summary names the location inside the body/form, without the transport prefix
    first = detail[0]
    loc = first["loc"][1:] if first["loc"] and first["loc"][0] in ("body", "query", "path", "header") else first["loc"]
    summary = f"{_loc_str(loc)}: {first['msg']}"
    if len(detail) > 1:
        summary = f"{len(detail)} validation errors; first: {summary}"
    return ApiError(422, summary, detail=detail)


# --- handlers ---------------------------------------------------------------------------------------


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    extra = dict(exc.extra)
    if exc.status_code >= 500:
        rid = request_id(request)
        extra["request_id"] = rid
        cause = exc.__cause__
        if cause is not None:  # the detail stays in the log, under the id the client was given
            log.warning("%s %s answered %d (%s), request_id=%s: %s: %s", request.method, request.url.path,
                        exc.status_code, exc.message, rid, type(cause).__name__, cause)
    return error_response(exc.status_code, exc.message, headers=exc.headers, **extra)


async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return await _api_error(request, validation_error(exc.errors()))


async def _pydantic_validation(request: Request, exc: ValidationError) -> JSONResponse:
    return await _api_error(request, validation_error(exc.errors(), ("body",)))


async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


_MEDIA_STATUS = {MediaTooLarge: 413, UnsupportedMediaType: 415, EmptyMedia: 400}


async def _media_error(request: Request, exc: MediaError) -> JSONResponse:
    status = next((code for cls, code in _MEDIA_STATUS.items() if isinstance(exc, cls)), 400)
    return error_response(status, str(exc))


async def _multipart_error(request: Request, exc: MultipartError) -> JSONResponse:
    return error_response(400, str(exc))


async def _client_disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
    # nobody will read this; it only ends the request cleanly
    return error_response(400, "client disconnected before the request body was complete")


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-ID``, echoed back) and turns any unhandled exception into
    a JSON 500 carrying that id, after logging it with its traceback (server side only)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s (request_id=%s)", scope.get("method"), scope.get("path"), rid)
            if started:
                raise  # the response is under way; the server can only close the connection
            response = JSONResponse({"error": "internal error", "request_id": rid}, status_code=500)
            await response(scope, receive, send_with_id)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ValidationError, _pydantic_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(MediaError, _media_error)
    app.add_exception_handler(MultipartError, _multipart_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_middleware(RequestContextMiddleware)
