"""The webhook endpoint as an ASGI app (Starlette), for ``ecs-detach up`` and containers.

Every path goes to ``WebhookRouter`` (routes, statuses and problem documents live there); this
module only reads the body (stopping at the size limit, within ``body_timeout_s``: 408 after
it) and adds ``GET /healthz`` and the web console (``/console``, ``handler/local/console``).
A client that goes away before its body is complete is a DEBUG line: nobody is there to answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from handler.entry._problems import problem
from handler.entry.runtime import Runtime
from handler.entry.webhooks import PROBLEM_JSON, WebhookRouter, WebRequest
from handler.support.log import log_event

# Every method reaches the router, which answers 405 (with Allow) for all but POST.
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _read_body(request: Request, max_body_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:  # stop reading: the router answers 413
            break
    return bytes(body)


def runtime_app(runtime: Runtime) -> Starlette:
    """The webhook app of ``runtime``: its router, with the body limits of its settings."""
    from handler.local.console import Console, starlette_route  # noqa: PLC0415 (jinja2 loads with it)

    settings = runtime.full_settings
    console = starlette_route(Console.for_runtime(runtime), settings.max_body_bytes)
    return create_app(
        runtime.router,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.http_body_timeout_s,
        routes=console,
    )


def create_app(
    router: WebhookRouter, *, max_body_bytes: int, body_timeout_s: float, routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """The webhook app; ``routes`` come before the webhook's catch-all (the console)."""

    async def webhook(request: Request) -> Response:
        try:
            body = await asyncio.wait_for(_read_body(request, max_body_bytes), body_timeout_s)
        except asyncio.TimeoutError:
            log_event(
                "http.body_timeout", level=logging.DEBUG, path=request.url.path, timeout_s=body_timeout_s
            )
            return JSONResponse(
                problem(408, "Request Timeout", f"the body did not arrive within {body_timeout_s} s"),
                status_code=408,
                headers={"Connection": "close"},
                media_type=PROBLEM_JSON,
            )
        except ClientDisconnect:
            log_event("http.client_disconnected", level=logging.DEBUG, path=request.url.path)
            return Response(status_code=400)  # never sent: the client is gone
        headers = {name.lower(): value for name, value in request.headers.items()}
        web = WebRequest(request.method, request.url.path, headers, body)
        answer = await run_in_threadpool(router.handle, web)
        if answer.html is not None:
            return HTMLResponse(answer.html, status_code=answer.status, headers=answer.headers)
        return JSONResponse(
            answer.body, status_code=answer.status, headers=answer.headers, media_type=answer.content_type
        )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def server_error(_: Request, exc: Exception) -> Response:
        # The cause goes to the log (errors here carry no secrets); the client gets no traceback.
        log_event("http.error", level=logging.ERROR, error=f"{type(exc).__name__}: {exc}")
        return JSONResponse(
            problem(500, "Internal Server Error", "the request could not be handled"),
            status_code=500,
            media_type=PROBLEM_JSON,
        )

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *routes,
            Route("/{path:path}", webhook, methods=_ALL_METHODS),
        ],
        exception_handlers={Exception: server_error},
    )
