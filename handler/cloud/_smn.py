"""The SMN v2 call that reports results (docs/cloud-api.md §6), over a signed ``httpx.Client``."""

from __future__ import annotations

from typing import Any

from handler.cloud._client import SignedClient, json_object, required_str


class SmnClient(SignedClient):
    """Publish to a topic. Every call has a timeout and raises ``ApiError`` (an error answer,
    ``SMN.xxxx`` codes) or ``TransportError`` (no answer)."""

    api_version = "v2"

    def publish(
        self,
        topic_urn: str,
        *,
        message: str,
        subject: str | None = None,
        message_structure: str | None = None,
        time_to_live: int | None = None,
    ) -> str:
        """``POST /v2/{project_id}/notifications/topics/{topic_urn}/publish`` → the message ID.

        ``message_structure`` (JSON text, per-protocol bodies with a ``default``) takes
        precedence over ``message`` at SMN; ``time_to_live`` is in seconds (sent as a string).
        """
        body: dict[str, Any] = {"message": message}
        if subject is not None:
            body["subject"] = subject
        if message_structure is not None:
            body["message_structure"] = message_structure
        if time_to_live is not None:
            body["time_to_live"] = str(time_to_live)
        path = self._path(None, "notifications/topics/{topic_urn}/publish", topic_urn=topic_urn)
        response = self._send("POST", path, body=body)
        return required_str(response, json_object(response), "message_id", "publish")
