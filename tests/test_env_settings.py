"""The settings reader (``handler/support/env_settings.py``) against pydantic-settings, the library
whose rules it follows: on the same environments, both must read the same value for every field
of ``Settings`` and ``CloudCredentials``, and refuse the same values."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError, create_model
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError

from handler.entry.functiongraph import read_settings
from handler.errors import ConfigError
from handler.settings import CloudCredentials, FunctionSettings, Settings
from handler.support.env_settings import EnvSettings, environ_lookup, environment_values

MODELS: tuple[type[EnvSettings], ...] = (Settings, CloudCredentials)
SECRET = "s3cret-value-that-must-not-show"


@cache
def _mirror(model: type[EnvSettings]) -> type[BaseSettings]:
    """``model``'s fields on a pydantic-settings ``BaseSettings``."""
    fields: Any = {name: (field.annotation, field) for name, field in model.model_fields.items()}
    return create_model(f"{model.__name__}Reference", __base__=BaseSettings, **fields)


def _source(model: type[EnvSettings]) -> EnvSettingsSource:
    """pydantic-settings' environment source for ``model``, with its prefix."""
    return EnvSettingsSource(_mirror(model), env_prefix=model.env_prefix)


def _reference(model: type[EnvSettings], environ: dict[str, str]) -> dict[str, Any]:
    """What pydantic-settings reads for ``model``'s fields from ``environ``."""
    with _environment(environ):
        return dict(_source(model)())


@pytest.fixture(autouse=True)
def _no_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: none of the runner's ECS_DETACH_* or HUAWEICLOUD_SDK_* variables."""
    for name in list(os.environ):
        if name.upper().startswith(("ECS_DETACH_", "HUAWEICLOUD_SDK_")):
            monkeypatch.delenv(name)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` added, for the duration of a ``with`` (pytest's own
    monkeypatch, which a hypothesis example cannot take as a fixture)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        yield


def _variables(model: type[EnvSettings]) -> Iterator[tuple[str, bool]]:
    """Each field's variable, and whether the field takes JSON (per pydantic-settings)."""
    source = _source(model)
    for name, field in model.model_fields.items():
        yield f"{model.env_prefix}{name}".upper(), source._field_is_complex(field)[0]


def _case(name: str, flips: list[bool]) -> str:
    """``name`` with the letters at the flagged positions in lower case."""
    return "".join(c.lower() if i < len(flips) and flips[i] else c for i, c in enumerate(name))


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
).map(json.dumps)


@st.composite
def _environments(draw: st.DrawFn, model: type[EnvSettings]) -> dict[str, str]:
    """Some of ``model``'s variables, in any case, with text (simple fields) or any JSON
    (fields that take JSON), among variables that name no field."""
    environ = {}
    for variable, takes_json in _variables(model):
        if draw(st.booleans()):
            name = _case(variable, draw(st.lists(st.booleans(), max_size=len(variable))))
            environ[name] = draw(_JSON if takes_json else _TEXT)
    environ[f"{model.env_prefix}NOT_A_FIELD"] = draw(_TEXT)
    return environ


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_field_is_read_as_pydantic_settings_reads_it(
    model: type[EnvSettings], data: st.DataObject
) -> None:
    environ = data.draw(_environments(model))
    assert environment_values(model, environ_lookup(environ)) == _reference(model, environ)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_json_is_taken_by_the_same_fields(model: type[EnvSettings]) -> None:
    """Every field that takes JSON for pydantic-settings refuses text that is not JSON here."""
    for variable, takes_json in _variables(model):
        if takes_json:
            with pytest.raises(ConfigError, match=f"^{variable}: not valid JSON"):
                environment_values(model, environ_lookup({variable: "not json"}))
        else:
            assert environment_values(model, environ_lookup({variable: "not json"})) != {}


def test_what_is_not_json_is_refused_by_both_naming_the_variable_not_the_value() -> None:
    environ = {"ECS_DETACH_WEBHOOK_BEARER_TOKENS": SECRET}
    with pytest.raises(SettingsError):
        _reference(Settings, environ)
    with pytest.raises(ConfigError) as refused, _environment(environ):
        Settings()
    assert str(refused.value) == "ECS_DETACH_WEBHOOK_BEARER_TOKENS: not valid JSON (Expecting value)"
    assert SECRET not in str(refused.value)


def test_the_constructor_wins_over_the_environment_and_validation_hides_values() -> None:
    environ = {"ECS_DETACH_REGION": "eu-de", "ecs_detach_max_records": "7", "ECS_DETACH_POLL_TIMEOUT_S": "9"}
    with _environment(environ):
        configured = Settings(region="ap-southeast-1")
        assert configured.region == "ap-southeast-1"
        assert (configured.max_records, configured.poll_timeout_s) == (7, 9.0)
    environ = {"ECS_DETACH_APPROVAL_LINK_SECRET": SECRET[:10], "ECS_DETACH_MAX_RECORDS": SECRET}
    with _environment(environ), pytest.raises(ValidationError, match="max_records") as invalid:
        Settings()
    assert SECRET not in str(invalid.value)


def test_an_approval_expiry_the_store_could_not_outlast_is_refused() -> None:
    # The store keeps a waiting request's key 24 h: an approval decided after that would be told
    # "the detach proceeds" and detach nothing, and an undecided one would end without a result.
    with _environment({"ECS_DETACH_APPROVAL_EXPIRY_S": "90000"}), pytest.raises(ValidationError) as refused:
        FunctionSettings()
    (error,) = refused.value.errors()
    assert (error["loc"], error["type"]) == (("approval_expiry_s",), "less_than_equal")
    with _environment({"ECS_DETACH_APPROVAL_EXPIRY_S": "82800"}):
        assert FunctionSettings().approval_expiry_s == 82800.0


class _Context:
    """A FunctionGraph context serving user data (the encrypted variables among them)."""

    def __init__(self, data: dict[str, str]) -> None:
        self._data = data

    def getUserData(self, key: str) -> str:
        return self._data.get(key, "")


def test_user_data_wins_over_the_environment_and_an_empty_value_is_not_set() -> None:
    context = _Context(
        {"ECS_DETACH_ALLOWED_PROJECTS": '["p1"]', "ECS_DETACH_REGION": "", "HUAWEICLOUD_SDK_SK": SECRET}
    )
    with _environment({"ECS_DETACH_ALLOWED_PROJECTS": '["p2"]', "ECS_DETACH_REGION": "eu-de"}):
        configured = read_settings(Settings, context)
        credentials = read_settings(CloudCredentials, context)
    assert (configured.allowed_projects, configured.region) == (["p1"], "eu-de")
    assert credentials.sk is not None
    assert credentials.sk.get_secret_value() == SECRET
