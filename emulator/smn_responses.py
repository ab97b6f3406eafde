"""HTTP ↔ SMN backend: the signed SMN v2 endpoints, the unsigned ``/_smn/`` pages a subscriber
visits (signing certificate, confirm, unsubscribe) and the ``/_emulator/smn/`` admin views.

Signed endpoints check the signature (401 ``APIGW.0301``) and the project as the ECS ones do,
against the same credentials; SMN's own errors have its shape ``{"request_id", "code",
"message"}``. Published messages and confirmation requests are pushed by a ``Pusher``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulator.auth import AuthError
from emulator.models import EcsBackend, iso_ms
from emulator.responses import (
    Endpoint,
    authenticate,
    gateway_error,
    json_response,
    project_allowed,
    request_id,
)
from emulator.smn_models import MAX_PAGE_SIZE, SmnBackend, SmnError, Subscription, Topic
from emulator.smn_push import Pusher

PEM_TYPE = "application/x-pem-file"


@dataclass(frozen=True)
class SmnCall:
    """An authenticated SMN call: the URL's project and path parameters, query, JSON body and the
    emulator's own base URL (for the links in pushed messages)."""

    project_id: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: Mapping[str, Any]
    base_url: str


SmnHandler = Callable[[SmnCall], dict[str, Any]]


def smn_error(request: Request, error: SmnError) -> Response:
    """SMN's error shape."""
    body = {"request_id": request_id(request), "code": error.code, "message": error.message}
    return json_response(request, body, error.status)


def _json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; anything else reads as ``{}``, so required fields fail."""
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _int_query(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()):
        raise SmnError(400, "SMN.0015", "Parameter: Offset or limit is invalid.")
    return int(value)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def topic_view(topic: Topic) -> dict[str, Any]:
    """A topic as ``GET /v2/{project_id}/notifications/topics`` lists it."""
    return {
        "topic_urn": topic.urn,
        "topic_id": topic.topic_id,
        "name": topic.name,
        "display_name": topic.display_name,
        "push_policy": 0,
        "enterprise_project_id": "0",
    }


def subscription_view(subscription: Subscription) -> dict[str, Any]:
    """A subscription for the admin API (without its confirmation token)."""
    return {
        "subscription_urn": subscription.urn,
        "topic_urn": subscription.topic_urn,
        "protocol": subscription.protocol,
        "endpoint": subscription.endpoint,
        "remark": subscription.remark,
        "status": subscription.status,
        "created": iso_ms(subscription.created),
    }


class SmnApi:
    """The SMN endpoints of one backend; ``gateway`` holds the accepted credentials."""

    def __init__(self, gateway: EcsBackend, backend: SmnBackend) -> None:
        self._gateway = gateway
        self._backend = backend
        self._pusher = Pusher(backend)

    def endpoint(self, handler: SmnHandler) -> Endpoint:
        """Wrap a handler into a signed Starlette endpoint."""

        async def signed_endpoint(request: Request) -> Response:
            body = await request.body()
            try:
                received, credential = authenticate(request, body, self._gateway)
            except AuthError as exc:
                return gateway_error(request, 401, "APIGW.0301", str(exc))
            project_id = request.path_params["project_id"]
            call = SmnCall(
                project_id, request.path_params, request.query_params, _json_object(body), _base_url(request)
            )
            try:
                if not project_allowed(received, project_id, credential):
                    # What SMN answers here is undocumented; SMN.0001 (no permission) is our choice.
                    raise SmnError(403, "SMN.0001", "No permission to request resources.")
                payload = handler(call)
            except SmnError as exc:
                return smn_error(request, exc)
            return json_response(request, {"request_id": request_id(request), **payload})

        return signed_endpoint

    # -- signed handlers -------------------------------------------------------------------

    def create_topic(self, call: SmnCall) -> dict[str, Any]:
        """``POST /v2/{project_id}/notifications/topics``."""
        return {"topic_urn": self._backend.create_topic(call.project_id, call.body).urn}

    def list_topics(self, call: SmnCall) -> dict[str, Any]:
        """``GET /v2/{project_id}/notifications/topics`` with ``offset`` and ``limit``."""
        count, page = self._backend.list_topics(
            call.project_id,
            offset=_int_query(call.query, "offset", 0),
            limit=_int_query(call.query, "limit", MAX_PAGE_SIZE),
        )
        return {"topic_count": count, "topics": [topic_view(t) for t in page]}

    def subscribe(self, call: SmnCall) -> dict[str, Any]:
        """``POST …/topics/{topic_urn}/subscriptions``; pushes the confirmation request."""
        subscription, confirmation = self._backend.subscribe(
            call.project_id, call.params["topic_urn"], call.body, call.base_url
        )
        if confirmation is not None:
            self._pusher.push([confirmation])
        return {"subscription_urn": subscription.urn}

    def publish(self, call: SmnCall) -> dict[str, Any]:
        """``POST …/topics/{topic_urn}/publish``; pushes to every confirmed subscription."""
        message_id, messages = self._backend.publish(
            call.project_id, call.params["topic_urn"], call.body, call.base_url
        )
        self._pusher.push(messages)
        return {"message_id": message_id}

    # -- the pages a subscriber visits -----------------------------------------------------

    async def cert(self, request: Request) -> Response:
        """``GET /_smn/cert.pem``: the certificate of the key that signs every message."""
        return Response(self._backend.signer.cert_pem, media_type=PEM_TYPE)

    async def confirm(self, request: Request) -> Response:
        """``GET /_smn/confirm?token=…``: the ``subscribe_url`` of a confirmation request."""
        try:
            subscription = self._backend.confirm(request.query_params.get("token", ""))
        except SmnError as exc:
            return smn_error(request, exc)
        return json_response(
            request, {"request_id": request_id(request), "subscription_urn": subscription.urn}
        )

    async def unsubscribe(self, request: Request) -> Response:
        """``GET /_smn/unsubscribe?subscription_urn=…``: the ``unsubscribe_url`` of a notification."""
        try:
            subscription = self._backend.unsubscribe(request.query_params.get("subscription_urn", ""))
        except SmnError as exc:
            return smn_error(request, exc)
        return json_response(
            request, {"request_id": request_id(request), "subscription_urn": subscription.urn}
        )

    # -- admin -----------------------------------------------------------------------------

    async def admin_topics(self, request: Request) -> Response:
        """``GET /_emulator/smn/topics``: every project's topics."""
        topics = self._backend.snapshot().topics
        views = [{**topic_view(t), "project_id": t.project_id, "created": iso_ms(t.created)} for t in topics]
        return json_response(request, {"topics": views})

    async def admin_subscriptions(self, request: Request) -> Response:
        """``GET /_emulator/smn/subscriptions``: every subscription and its status."""
        subscriptions = self._backend.snapshot().subscriptions
        return json_response(request, {"subscriptions": [subscription_view(s) for s in subscriptions]})

    async def admin_deliveries(self, request: Request) -> Response:
        """``GET /_emulator/smn/deliveries``: every push attempt, oldest first."""
        attempts = self._backend.snapshot().attempts
        return json_response(request, {"deliveries": [asdict(a) for a in attempts]})
