"""The EVS v2 call the safety checks make (docs/cloud-api.md §9), over a signed ``httpx.Client``."""

from __future__ import annotations

from handler.cloud._client import SignedClient, json_object
from handler.core.resources import Volume


class EvsClient(SignedClient):
    """Show one disk. Every call has a timeout and raises ``ApiError`` (an error answer, e.g.
    404 ``itemNotFound``) or ``TransportError`` (no answer)."""

    api_version = "v2"

    def show_volume(self, volume_id: str, *, project_id: str | None = None) -> Volume:
        """``GET /v2/{project_id}/cloudvolumes/{volume_id}``."""
        body = json_object(
            self._send("GET", self._path(project_id, "cloudvolumes/{volume_id}", volume_id=volume_id))
        )
        return Volume.model_validate(body.get("volume"))
