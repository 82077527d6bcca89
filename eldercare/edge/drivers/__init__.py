"""Drivers: ``eldercare.edge.drivers.<type>`` modules with a ``DRIVER`` class, found by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import msgspec

from eldercare.edge.drivers.base import AccChunk, Action, Driver, Health, Item, Sample, Sink
from eldercare.edge.errors import DriverError

if TYPE_CHECKING:
    from eldercare.edge.config import DriverEntry, GatewayFile

__all__ = [
    "AccChunk",
    "Action",
    "Driver",
    "Health",
    "Item",
    "Sample",
    "Sink",
    "driver_options",
    "load_driver",
]


def driver_class(type_: str) -> type[Driver]:
    """``simulated`` -> ``eldercare.edge.drivers.simulated.DRIVER``; ``pkg.mod:Class`` for others."""
    module_name, _, attr = type_.partition(":")
    if "." not in module_name:
        module_name = f"eldercare.edge.drivers.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"unknown driver type {type_!r} ({exc})"
        raise DriverError(msg) from None
    cls = getattr(module, attr or "DRIVER", None)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        msg = f"driver type {type_!r} names no Driver class"
        raise DriverError(msg)
    return cls


def driver_options(cls: type[Driver], options: dict[str, Any], label: str) -> Any:
    """Validate a driver's options with its ``Options`` (a msgspec Struct, or a pydantic model)."""
    from eldercare.edge.config import problem

    try:
        if hasattr(cls.Options, "model_validate"):  # a third-party driver's pydantic model
            return cls.Options.model_validate(options)
        return msgspec.convert(options, cls.Options)
    except (msgspec.ValidationError, ValueError) as exc:
        errors = getattr(exc, "errors", None)
        if callable(errors):  # pydantic: one "loc: msg" per problem
            text = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors())
        else:
            text = problem(exc)
        msg = f"driver {label}: {text}"
        raise DriverError(msg) from None


def load_driver(entry: DriverEntry, gateway: GatewayFile) -> Driver:
    cls = driver_class(entry.type)
    label = entry.name or entry.type
    return cls(label, driver_options(cls, entry.options, label), gateway)
