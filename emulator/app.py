"""The ASGI application serving one backend."""

from __future__ import annotations

from starlette.applications import Starlette

from emulator.models import EcsBackend
from emulator.responses import AdminApi, EcsApi, internal_error
from emulator.urls import admin_routes, api_routes


def create_app(backend: EcsBackend) -> Starlette:
    """A Starlette app answering the ECS API and ``/_emulator/`` from ``backend``."""
    api = EcsApi(backend)
    app = Starlette(
        routes=api_routes(api) + admin_routes(AdminApi(backend)),
        exception_handlers={404: api.not_found, 405: api.not_found, Exception: internal_error},
    )
    # A trailing slash is another, unknown API to the gateway: no redirects.
    app.router.redirect_slashes = False
    app.state.backend = backend
    return app
