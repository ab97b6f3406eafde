"""Which URL each cloud service is called at: explicit URL > region (and cloud) > the ECS URL."""

from __future__ import annotations

import pytest

from handler.settings import Settings

VPC_ECS = "https://ecs-vpcep.example.internal"
EMULATOR = "http://127.0.0.1:8081"


def settings(**values: str | None) -> Settings:
    """Settings from ``values`` alone; the test's environment does not leak in."""
    endpoints = {"region": None, "ecs_endpoint": None, "evs_endpoint": None, "smn_endpoint": None}
    return Settings(**{**endpoints, **values})  # type: ignore[arg-type]


def test_a_vpc_endpoint_for_ecs_leaves_evs_and_smn_on_the_region() -> None:
    configured = settings(region="ap-southeast-1", ecs_endpoint=VPC_ECS + "/")
    assert configured.ecs_url() == VPC_ECS
    assert configured.evs_url() == "https://evs.ap-southeast-1.myhuaweicloud.com"
    assert configured.smn_url() == "https://smn.ap-southeast-1.myhuaweicloud.com"


@pytest.mark.parametrize(
    ("values", "ecs", "evs", "smn"),
    [
        pytest.param(
            {"region": "eu-de", "cloud": "otc"},
            "https://ecs.eu-de.otc.t-systems.com",
            "https://evs.eu-de.otc.t-systems.com",
            "https://smn.eu-de.otc.t-systems.com",
            id="region and cloud",
        ),
        pytest.param(
            {"ecs_endpoint": EMULATOR + "/"}, EMULATOR, EMULATOR, EMULATOR, id="no region: the ECS URL"
        ),
        pytest.param(
            {
                "region": "ap-southeast-1",
                "ecs_endpoint": VPC_ECS,
                "evs_endpoint": "https://evs-vpcep.example.internal/",
                "smn_endpoint": "https://smn-vpcep.example.internal",
            },
            VPC_ECS,
            "https://evs-vpcep.example.internal",
            "https://smn-vpcep.example.internal",
            id="explicit URLs win over the region",
        ),
        pytest.param(
            {"ecs_endpoint": EMULATOR, "evs_endpoint": "http://127.0.0.1:9"},
            EMULATOR,
            "http://127.0.0.1:9",
            EMULATOR,
            id="explicit EVS, no region",
        ),
        pytest.param(
            {"region": "ap-southeast-1", "smn_endpoint": "https://smn.example"},
            "https://ecs.ap-southeast-1.myhuaweicloud.com",
            "https://evs.ap-southeast-1.myhuaweicloud.com",
            "https://smn.example",
            id="explicit SMN, region",
        ),
        pytest.param({}, None, None, None, id="nothing configured"),
    ],
)
def test_endpoint_precedence(
    values: dict[str, str], ecs: str | None, evs: str | None, smn: str | None
) -> None:
    configured = settings(**values)
    assert (configured.ecs_url(), configured.evs_url(), configured.smn_url()) == (ecs, evs, smn)
