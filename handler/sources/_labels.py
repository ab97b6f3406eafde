"""Which alert labels name the server and the disk: a setting (``ECS_DETACH_ALERT_LABELS``), so
it lives apart from the Alertmanager adapter that the settings would otherwise import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class LabelNames(BaseModel):
    """For each request field, the alert label names tried in order (a string means one name).

    ``instance_id`` is the second choice for the server: the Cloud Eye dimension name, and what
    OpenStack service discovery's ``__meta_openstack_instance_id`` is usually relabelled to.
    ``device`` is the disk as node_exporter labels it (``vdb``); the guest's name for a disk is
    usually, not always, the one ECS reports.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    server_id: tuple[str, ...] = Field(default=("server_id", "instance_id"), min_length=1)
    volume_id: tuple[str, ...] = ("volume_id",)
    device: tuple[str, ...] = ("device",)
    project_id: tuple[str, ...] = ("project_id",)

    @field_validator("*", mode="before")
    @classmethod
    def _one_name(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _names_a_disk(self) -> LabelNames:
        if not self.volume_id and not self.device:
            raise ValueError("give label names for volume_id or device")
        return self
