"""The FunctionGraph package, built once per session for the running Python (wheels cached)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from handler.local.package import PackageReport, build_package
from tests.history.conftest import postgres_url  # noqa: F401 (a PostgreSQL schema of the test's own)

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheelhouse")


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> PackageReport:
    # With the webhook routes: test_package runs an API Gateway event from it.
    return build_package(
        RUNNING_PYTHON, tmp_path_factory.mktemp("dist"), webhook_routes=True, wheelhouse=wheelhouse
    )
