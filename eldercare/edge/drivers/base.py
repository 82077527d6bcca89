"""What a driver is: something that turns devices into items for the agent's inbox.

A driver gets its options (validated by its own ``Options`` model), starts its own thread or
client, and puts :data:`Item` objects into the sink. It never touches the outbox, the clock or
MQTT to the platform. Adding a driver is adding one module ``eldercare/edge/drivers/<type>.py``
with a ``DRIVER`` attribute (or naming ``package.module:Class`` as the type); nothing else.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeAlias

import msgspec

if TYPE_CHECKING:
    import numpy as np

    from eldercare import protocol
    from eldercare.edge.config import GatewayFile

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading. ``t_ms`` only when the device stamps it itself; the agent stamps otherwise."""

    sensor: str
    metric: str
    value: float
    t_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AccChunk:
    """A run of wearable accelerometer samples: ``t`` (n,) seconds on any steady scale, ``acc`` (n, 3) g."""

    sensor: str
    t: np.ndarray
    acc: np.ndarray


@dataclass(frozen=True, slots=True)
class Action:
    """A person did something: ``sos`` (help!) or ``ok`` (answer to "are you OK?")."""

    sensor: str
    action: Literal["sos", "ok"]


@dataclass(frozen=True, slots=True)
class Health:
    """Device health: battery 0..1, a device's own low-battery flag, and/or reachability."""

    sensor: str
    battery: float | None = None
    online: bool | None = None
    battery_low: bool | None = None  # devices that report no percentage, only "low" (zigbee2mqtt)
    via: str | None = None  # the bridge sensor this one is reached through (status ``via``)


Item: TypeAlias = Sample | AccChunk | Action | Health


class Sink(Protocol):
    def put(self, item: Item) -> None: ...


class NoOptions(msgspec.Struct, forbid_unknown_fields=True):
    """A driver without options."""


class Driver(ABC):
    """Base class of drivers.

    ``Options`` is a ``msgspec.Struct`` (what the shipped drivers use: light on a gateway); a
    third-party driver may use a pydantic model instead, validated with ``model_validate``.
    """

    Options: ClassVar[type[Any]] = NoOptions

    def __init__(self, name: str, options: Any, gateway: GatewayFile) -> None:
        self.name = name
        self.options = options
        self.gateway = gateway

    @abstractmethod
    def start(self, sink: Sink) -> None:
        """Begin delivering items; must return promptly (run a thread if needed)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop delivering and release resources; idempotent."""

    def apply_config(self, config: protocol.GatewayConfig) -> None:  # noqa: B027 - optional hook
        """A new remote config (sampling rates) is in force."""

    def prompt(self, wearable: str, resident: str | None, text: str) -> None:  # noqa: B027
        """Ask the resident (speaker, wearable buzzer) whether they are all right."""
