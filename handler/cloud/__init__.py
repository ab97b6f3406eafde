"""Huawei Cloud API clients: AK/SK signing, endpoints, typed errors, the ECS, EVS and SMN calls."""

from handler.cloud._budget import call_budget, time_budget
from handler.cloud._client import DEFAULT_TIMEOUT
from handler.cloud._credentials import Credentials
from handler.cloud._ecs import DetachAnswer, EcsClient
from handler.cloud._endpoints import CloudName, endpoint
from handler.cloud._errors import ApiError, CallBudgetSpent, CloudError, TransportError
from handler.cloud._evs import EvsClient
from handler.cloud._ids import InvalidId
from handler.cloud._signer import SignerAuth, sign
from handler.cloud._smn import SmnClient

__all__ = [
    "DEFAULT_TIMEOUT",
    "ApiError",
    "CallBudgetSpent",
    "CloudError",
    "CloudName",
    "Credentials",
    "DetachAnswer",
    "EcsClient",
    "EvsClient",
    "InvalidId",
    "SignerAuth",
    "SmnClient",
    "TransportError",
    "call_budget",
    "endpoint",
    "sign",
    "time_budget",
]
