"""Drivers: ``eldercare.edge.drivers.<type>`` modules with a ``DRIVER`` class, found by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pydantic import ValidationError

from eldercare.edge.drivers.base import AccChunk, Action, Driver, Health, Item, Sample, Sink
from eldercare.edge.errors import DriverError

if TYPE_CHECKING:
    from eldercare.edge.config import DriverEntry, GatewayFile

__all__ = ["AccChunk", "Action", "Driver", "Health", "Item", "Sample", "Sink", "load_driver"]


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


def load_driver(entry: DriverEntry, gateway: GatewayFile) -> Driver:
    cls = driver_class(entry.type)
    try:
        options = cls.Options.model_validate(entry.options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        msg = f"driver {entry.name or entry.type}: {problems}"
        raise DriverError(msg) from None
    return cls(entry.name or entry.type, options, gateway)
