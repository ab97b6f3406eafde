"""The route table (moto's ``urls.py``): the real ECS v1, EVS v2 and SMN v2 paths, then the
unsigned pages and admin API."""

from __future__ import annotations

from starlette.routing import Route

from emulator.responses import AdminApi, EcsApi
from emulator.smn_responses import SmnApi

PROJECT = "/v1/{project_id}"
SERVER = PROJECT + "/cloudservers/{server_id}"
TOPICS = "/v2/{project_id}/notifications/topics"
TOPIC = TOPICS + "/{topic_urn}"


def api_routes(api: EcsApi) -> list[Route]:
    """The signed ECS and EVS endpoints; ``detail`` comes before ``{server_id}`` so it wins."""
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
        Route(
            "/v2/{project_id}/cloudvolumes/{volume_id}",
            signed(api.show_volume),
            methods=["GET"],
            name="show_volume",
        ),
    ]


def smn_routes(smn: SmnApi) -> list[Route]:
    """The signed SMN endpoints (``{topic_urn}`` arrives percent-decoded), the unsigned pages
    its messages link to, and its ``/_emulator/smn/`` admin views."""
    signed = smn.endpoint
    return [
        Route(TOPICS, signed(smn.create_topic), methods=["POST"], name="create_topic"),
        Route(TOPICS, signed(smn.list_topics), methods=["GET"], name="list_topics"),
        Route(f"{TOPIC}/subscriptions", signed(smn.subscribe), methods=["POST"], name="subscribe"),
        Route(f"{TOPIC}/publish", signed(smn.publish), methods=["POST"], name="publish"),
        Route("/_smn/cert.pem", smn.cert, methods=["GET"]),
        Route("/_smn/confirm", smn.confirm, methods=["GET"]),
        Route("/_smn/unsubscribe", smn.unsubscribe, methods=["GET"]),
        Route("/_emulator/smn/topics", smn.admin_topics, methods=["GET"]),
        Route("/_emulator/smn/subscriptions", smn.admin_subscriptions, methods=["GET"]),
        Route("/_emulator/smn/deliveries", smn.admin_deliveries, methods=["GET"]),
    ]


def admin_routes(admin: AdminApi) -> list[Route]:
    """The unsigned ``/_emulator/`` endpoints for local use and tests."""
    return [
        Route("/_emulator/state", admin.state, methods=["GET"]),
        Route("/_emulator/reset", admin.reset, methods=["POST"]),
        Route("/_emulator/config", admin.patch_config, methods=["PATCH"]),
        Route("/_emulator/volumes/{volume_id}", admin.patch_volume, methods=["PATCH"]),
        Route("/_emulator/calls", admin.calls, methods=["GET"]),
        Route("/_emulator/faults", admin.get_faults, methods=["GET"]),
        Route("/_emulator/faults", admin.put_faults, methods=["PUT"]),
        Route("/_emulator/faults", admin.delete_faults, methods=["DELETE"]),
    ]
