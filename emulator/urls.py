"""The route table (moto's ``urls.py``): the real ECS v1 paths, then the unsigned admin API."""

from __future__ import annotations

from starlette.routing import Route

from emulator.responses import AdminApi, EcsApi

PROJECT = "/v1/{project_id}"
SERVER = PROJECT + "/cloudservers/{server_id}"


def api_routes(api: EcsApi) -> list[Route]:
    """The signed ECS endpoints; ``detail`` comes before ``{server_id}`` so it wins."""
    signed = api.endpoint
    return [
        Route(
            f"{PROJECT}/cloudservers/detail", signed(api.list_servers), methods=["GET"], name="list_servers"
        ),
        Route(SERVER, signed(api.get_server), methods=["GET"], name="get_server"),
        Route(
            f"{SERVER}/block_device",
            signed(api.list_block_devices),
            methods=["GET"],
            name="list_block_devices",
        ),
        Route(
            SERVER + "/block_device/{volume_id}",
            signed(api.get_block_device),
            methods=["GET"],
            name="get_block_device",
        ),
        Route(
            SERVER + "/detachvolume/{volume_id}",
            signed(api.detach_volume),
            methods=["DELETE"],
            name="detach_volume",
        ),
        Route(f"{SERVER}/attachvolume", signed(api.attach_volume), methods=["POST"], name="attach_volume"),
        Route(PROJECT + "/jobs/{job_id}", signed(api.get_job), methods=["GET"], name="get_job"),
    ]


def admin_routes(admin: AdminApi) -> list[Route]:
    """The unsigned ``/_emulator/`` endpoints for local use and tests."""
    return [
        Route("/_emulator/state", admin.state, methods=["GET"]),
        Route("/_emulator/reset", admin.reset, methods=["POST"]),
        Route("/_emulator/config", admin.patch_config, methods=["PATCH"]),
        Route("/_emulator/volumes/{volume_id}", admin.patch_volume, methods=["PATCH"]),
        Route("/_emulator/calls", admin.calls, methods=["GET"]),
    ]
