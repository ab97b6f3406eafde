"""A local stand-in for the Huawei Cloud ECS API (detach, attach, jobs, servers), over HTTP.

State and the job engine live in ``models``; ``auth`` verifies SDK-HMAC-SHA256 signatures;
``responses`` and ``urls`` are the HTTP layer; ``faults`` injects errors, latency, hangs, dropped
connections, a rate limit and job faults; ``create_app`` builds the ASGI app. This package
never imports ``handler``: it is the independent counterpart the client is tested against.
"""

from emulator.app import create_app
from emulator.config import (
    DEMO_CREDENTIAL,
    DEMO_PROJECT_ID,
    EmulatorConfig,
    EmulatorCredential,
    credential_from_env,
)
from emulator.faults import FaultConfig, FaultConfigError, faults_from_env
from emulator.models import EcsBackend, EcsError
from emulator.seed import SeedError, load_seed

__all__ = [
    "DEMO_CREDENTIAL",
    "DEMO_PROJECT_ID",
    "EcsBackend",
    "EcsError",
    "EmulatorConfig",
    "EmulatorCredential",
    "FaultConfig",
    "FaultConfigError",
    "SeedError",
    "create_app",
    "credential_from_env",
    "faults_from_env",
    "load_seed",
]
