"""Service endpoints per cloud (docs/cloud-api.md §5): Huawei Cloud, its EU site, OTC, FE."""

from __future__ import annotations

from typing import Literal

from handler.errors import ConfigError

CloudName = Literal["huaweicloud", "huaweicloud-eu", "otc", "flexibleengine"]

_DOMAINS: dict[str, str] = {
    "huaweicloud": "myhuaweicloud.com",
    "huaweicloud-eu": "myhuaweicloud.eu",
    "otc": "otc.t-systems.com",
    "flexibleengine": "prod-cloud-ocb.orange-business.com",
}


def endpoint(service: str, region: str, cloud: CloudName = "huaweicloud") -> str:
    """``https://{service}.{region}.{domain}`` for the cloud, e.g. ``ecs``/``ap-southeast-1``."""
    if not region or not all(part.isalnum() for part in region.split("-")):
        raise ConfigError(f"invalid region {region!r}: expected a name like 'ap-southeast-1'")
    try:
        domain = _DOMAINS[cloud]
    except KeyError:
        raise ConfigError(f"unknown cloud {cloud!r}: one of {', '.join(_DOMAINS)}") from None
    return f"https://{service}.{region}.{domain}"
