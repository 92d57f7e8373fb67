"""Bluetooth's side of `carehub hub pair`, as data: which advertisements the pairing window
shows the installer, and the CareHub id a Bluetooth health device gets (the I/O is
`gateway.pairing_session`'s, the radio a `gateway.ble.transport.BleRadio`).

Only a device that advertises one of the four standard health services (Heart Rate
0x180D, Pulse Oximeter 0x1822, Health Thermometer 0x1809, Blood Pressure 0x1810) while the
window is open is asked about; a phone, a speaker or a watch speaking only its vendor's
protocol is not. Outside a window nothing is scanned, and an advertisement that arrives
after the close is ignored. Accepted, the device is bonded (LE pairing), recorded with
its own broker account (the bridge publishes its readings under it) and registered as a
wearable of the ``vitals`` channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from carehub.api_contract import DeviceKind
from gateway.ble.transport import Advertisement, normal_address

HEART_RATE_SERVICE = 0x180D
PULSE_OXIMETER_SERVICE = 0x1822
HEALTH_THERMOMETER_SERVICE = 0x1809
BLOOD_PRESSURE_SERVICE = 0x1810
HEALTH_SERVICES = {
    HEART_RATE_SERVICE: "heart rate",
    PULSE_OXIMETER_SERVICE: "pulse oximeter",
    HEALTH_THERMOMETER_SERVICE: "thermometer",
    BLOOD_PRESSURE_SERVICE: "blood pressure",
}
"""The standard services a hub pairs, by their 16-bit SIG UUID."""
KIND = DeviceKind.WEARABLE
"""What a Bluetooth health device is to the hub: a wearable of the ``vitals`` channel."""
ID_PREFIX = "ble-"
SILENCE_MS = 26 * 3_600_000
"""A Bluetooth device is offline for silence only after 26 h (ms): a blood-pressure monitor
or a thermometer measures once or twice a day, and the hub's 3-minute rule would call it
offline all day. Its bridge's last will says sooner when the bridge itself is gone."""


def is_bluetooth_id(device_id: str) -> bool:
    return device_id.startswith(ID_PREFIX)


def device_id_for(address: str) -> str:
    """A Bluetooth device's CareHub id (and broker username): ``ble-`` and its address's 12
    hex digits, lower case (``ble-c0ffee000001``): a colon is not allowed in a device id."""
    return ID_PREFIX + normal_address(address).replace(":", "").lower()


def services_text(services: frozenset[int]) -> str:
    return ", ".join(HEALTH_SERVICES[s] for s in sorted(services) if s in HEALTH_SERVICES)


@dataclass(frozen=True)
class BleDecision:
    verdict: Literal["ask", "accept", "ignore"]
    reason: str = ""


def decide(
    advert: Advertisement, handled: set[str], open_now: bool, accept_all: bool
) -> BleDecision:
    """What the pairing window does with one advertisement. `handled`: the addresses
    already asked about (accepted or refused) in this window: a device advertises many
    times a second, it is asked about once. A device paired before is asked again (its
    bond and broker password are renewed)."""
    if not open_now:
        return BleDecision("ignore", "pairing window closed")
    if not advert.services & HEALTH_SERVICES.keys():
        return BleDecision("ignore", "no standard health service")
    if normal_address(advert.address) in handled:
        return BleDecision("ignore", "already handled")
    return BleDecision("accept" if accept_all else "ask")


def question(advert: Advertisement) -> str:
    """What the installer is asked."""
    name = f" {advert.name!r}" if advert.name else ""
    return (
        f"pair Bluetooth{name} {normal_address(advert.address)}"
        f" ({services_text(advert.services)}) as a {KIND.value}?"
    )
