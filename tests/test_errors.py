"""Every exception ecs-detach defines derives from one root, and the built-in bases callers
catch (ValueError, RuntimeError) are kept."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import handler
from handler.cloud import ApiError, TransportError
from handler.core.validation import InvalidInput
from handler.errors import ConfigError, EcsDetachError
from handler.local.package import PackageError
from handler.sources import MappingError
from handler.store import ClaimLost, StoreError
from handler.topics import StaleDelivery, TopicConfigError, TopicError


def _exception_classes() -> list[type[BaseException]]:
    found = []
    for module_info in pkgutil.walk_packages(handler.__path__, "handler."):
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_every_exception_of_the_project_has_the_root() -> None:
    classes = _exception_classes()
    assert len(classes) >= 15
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, EcsDetachError))
    assert outside == []


def test_the_tree_keeps_the_bases_callers_rely_on() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(InvalidInput, ValueError)
    assert issubclass(MappingError, InvalidInput)
    assert issubclass(PackageError, RuntimeError)
    assert issubclass(TopicConfigError, TopicError)
    assert issubclass(TopicConfigError, ConfigError)
    assert issubclass(StaleDelivery, TopicError)
    assert issubclass(ClaimLost, StoreError)
    assert issubclass(ApiError, EcsDetachError)
    assert issubclass(TransportError, EcsDetachError)
