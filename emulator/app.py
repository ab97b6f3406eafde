"""The ASGI application serving one backend."""

from __future__ import annotations

from starlette.applications import Starlette

from emulator.models import EcsBackend
from emulator.responses import AdminApi, EcsApi, internal_error
from emulator.smn_models import SmnBackend
from emulator.smn_responses import SmnApi
from emulator.urls import admin_routes, api_routes, smn_routes


def create_app(backend: EcsBackend, smn: SmnBackend | None = None) -> Starlette:
    """A Starlette app answering the ECS, EVS and SMN APIs and ``/_emulator/`` from ``backend``
    and ``smn`` (a fresh ``SmnBackend`` on the backend's clock if not given)."""
    smn = smn or SmnBackend(clock=backend.now)
    api = EcsApi(backend)
    app = Starlette(
        routes=api_routes(api) + smn_routes(SmnApi(backend, smn)) + admin_routes(AdminApi(backend)),
        exception_handlers={404: api.not_found, 405: api.not_found, Exception: internal_error},
    )
    # A trailing slash is another, unknown API to the gateway: no redirects.
    app.router.redirect_slashes = False
    app.state.backend = backend
    app.state.smn = smn
    return app
