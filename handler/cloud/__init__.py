"""Huawei Cloud API client: AK/SK signing, endpoints, typed errors, the ECS calls."""

from handler.cloud._credentials import Credentials
from handler.cloud._ecs import DEFAULT_TIMEOUT, DetachAnswer, EcsClient
from handler.cloud._endpoints import CloudName, endpoint
from handler.cloud._errors import ApiError, CloudError, TransportError
from handler.cloud._signer import SignerAuth, sign

__all__ = [
    "DEFAULT_TIMEOUT",
    "ApiError",
    "CloudError",
    "CloudName",
    "Credentials",
    "DetachAnswer",
    "EcsClient",
    "SignerAuth",
    "TransportError",
    "endpoint",
    "sign",
]
