"""Typed settings from environment variables: ``EnvSettings``, a pydantic model whose fields are
filled from ``{env_prefix}{FIELD}`` variables, and ``environment_values`` for other lookups (a
FunctionGraph function's user data).

The rules are pydantic-settings' for what the settings here use, and
``tests/test_env_settings.py`` runs both on the same environments, field by field:

* a field ``name`` is read from ``{env_prefix}{NAME}``, matched case-insensitively;
* a field of a list, dict, set, tuple or model type (or an optional one) takes JSON (``null``
  leaves its default), any other the text as it is, for pydantic to validate (``"true"``,
  ``"2.5"``, a literal);
* values given to the constructor win over the environment; a variable that names no field is
  ignored.

Why not pydantic-settings itself: importing it costs about 26 ms and 3.1 MiB on every cold start
(it imports ``asyncio``, ``argparse``, ``dotenv`` and its cloud secret sources), about a tenth of the
official SDK's whole cold start, for an environment read that is this module
(docs/performance.md). A value that is not valid JSON is a ``ConfigError`` that names the
variable, never its value (it may be a secret).
"""

import json
import os
import types
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from handler.errors import ConfigError

# A setting's variable name (upper case) → its text, or None when it is not set.
Lookup = Callable[[str], str | None]
_COMPLEX = (list, dict, set, frozenset, tuple, BaseModel)


class EnvSettings(BaseModel):
    """A model read from the environment when it is built: ``Settings()`` reads every field it
    is not given from ``{env_prefix}{FIELD}``."""

    # validate_default: defaults are checked like set values, as pydantic-settings does;
    # hide_input_in_errors: an error names the setting, never its value (it may be a secret);
    # defer_build: this base is never read itself, and a settings class is built when first read
    # (building the base too cost every cold start about 0.4 ms).
    model_config = ConfigDict(
        extra="ignore", validate_default=True, hide_input_in_errors=True, defer_build=True
    )
    env_prefix: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        read = environment_values(type(self), environ_lookup(os.environ))
        super().__init__(**{**read, **values})


def environment_values(settings: type[EnvSettings], lookup: Lookup) -> dict[str, Any]:
    """The fields of ``settings`` that ``lookup`` has a value for, by field name: JSON decoded
    for the fields that take JSON, else the text."""
    values: dict[str, Any] = {}
    for field, (variable, takes_json) in _fields(settings).items():
        text = lookup(variable)
        if text is None:
            continue
        if not takes_json:
            values[field] = text
            continue
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{variable}: not valid JSON ({error.msg})") from None
        if decoded is not None:  # JSON null: not set, the default holds
            values[field] = decoded
    return values


@cache
def _fields(settings: type[EnvSettings]) -> dict[str, tuple[str, bool]]:
    """Each field → its variable, and whether it takes JSON."""
    return {
        name: (f"{settings.env_prefix}{name}".upper(), _takes_json(field.annotation))
        for name, field in settings.model_fields.items()
    }


def _takes_json(annotation: Any) -> bool:
    """A list, dict, set, tuple or model, or a union with one among its members."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_takes_json(member) for member in get_args(annotation))
    container = get_origin(annotation) or annotation
    return isinstance(container, type) and issubclass(container, _COMPLEX)


def environ_lookup(environ: Mapping[str, str]) -> Lookup:
    """A case-insensitive lookup in ``environ``, as the environment is read."""
    lowered = {name.lower(): value for name, value in environ.items()}
    return lambda name: lowered.get(name.lower())
