"""The Zigbee models CareHub supports, as data: one `ZigbeeModel` per Zigbee2MQTT model.

Each entry says which CareHub kind a model is and which keys of the JSON state Zigbee2MQTT
publishes for it (``zigbee2mqtt/<friendly_name>``) mean what, exactly as the model's page
on zigbee2mqtt.io documents them. To support another model, add one entry here (and its
row in docs/devices.md, with a test publishing its documented payloads): nothing else
changes. A model not listed is refused at pairing with a message saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ZigbeeKind = Literal["button", "fall_radar", "motion_sensor", "door_sensor"]
"""The CareHub device kind a Zigbee model is paired as (the server's `DeviceKind`)."""

MAINS_KINDS: frozenset[str] = frozenset({"fall_radar"})
"""Kinds with no battery to check: an mmWave radar draws too much to run on batteries."""

HOW_TO_ADD = (
    "add a ZigbeeModel for it in gateway/zigbee/models.py (the keys and values its"
    " zigbee2mqtt.io device page documents) and a row in docs/devices.md"
)


@dataclass(frozen=True)
class ZigbeeModel:
    """How one Zigbee2MQTT model maps onto CareHub."""

    model: str
    """``definition.model`` in ``zigbee2mqtt/bridge/devices``."""
    vendors: frozenset[str]
    """``definition.vendor`` values Zigbee2MQTT has used for it, lower case (it renamed
    some vendors between releases: Xiaomi → Aqara, TuYa → Tuya)."""
    kind: ZigbeeKind
    call_actions: frozenset[str] = frozenset()
    """Values of ``action`` that call for help (a button's alarm)."""
    fall_key: str | None = None
    fall_values: frozenset[str] = frozenset()
    """``fall_key`` taking one of these values is a fall (a rising edge: the radar repeats
    its state with every report)."""
    presence_key: str | None = None
    """A boolean: someone is there (activity ``presence`` on its rising edge)."""
    occupancy_key: str | None = None
    """A boolean: motion seen (activity ``motion`` on its rising edge)."""
    contact_key: str | None = None
    """A boolean: ``false`` = open (activity ``door_opened`` / ``door_closed`` on change)."""
    page: str = ""
    """The zigbee2mqtt.io page the keys come from."""


_PAGE = "https://www.zigbee2mqtt.io/devices/"

MODELS: tuple[ZigbeeModel, ...] = (
    ZigbeeModel(
        model="TS0215A_sos",
        vendors=frozenset({"tuya"}),
        kind="button",
        call_actions=frozenset({"emergency"}),
        page=_PAGE + "TS0215A_sos.html",
    ),
    ZigbeeModel(  # a plain wireless switch: its single click is the call
        model="WXKG11LM",
        vendors=frozenset({"aqara", "xiaomi"}),
        kind="button",
        call_actions=frozenset({"single"}),
        page=_PAGE + "WXKG11LM.html",
    ),
    ZigbeeModel(
        model="MIR-HE200-TY_fall",
        vendors=frozenset({"tuya"}),
        kind="fall_radar",
        fall_key="fall_down_status",
        fall_values=frozenset({"fall"}),
        presence_key="presence",
        page=_PAGE + "MIR-HE200-TY_fall.html",
    ),
    ZigbeeModel(
        model="RTCGQ11LM",
        vendors=frozenset({"aqara", "xiaomi"}),
        kind="motion_sensor",
        occupancy_key="occupancy",
        page=_PAGE + "RTCGQ11LM.html",
    ),
    ZigbeeModel(
        model="MCCGQ11LM",
        vendors=frozenset({"aqara", "xiaomi"}),
        kind="door_sensor",
        contact_key="contact",
        page=_PAGE + "MCCGQ11LM.html",
    ),
)

BY_MODEL: dict[str, ZigbeeModel] = {m.model: m for m in MODELS}
