"""Zigbee2MQTT's side of `carehub hub pair` and `hub remove`, as data: the requests the
pairing command publishes on ``<base>/bridge/request/…`` and what it decides about each
device Zigbee2MQTT reports on ``<base>/bridge/event`` (the I/O is
`gateway.pairing_session`'s).

A Zigbee device is accepted only if Zigbee2MQTT saw it join *during* the window
(``device_joined``) and then interviewed it successfully, as a supported model: a device
that joined at another time (Zigbee2MQTT's frontend, a permit-join left open) is refused,
and the hub ignores its messages.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

from gateway.pairing import BrokerAccounts
from gateway.zigbee.models import ZigbeeModel
from gateway.zigbee.translate import BridgeNotice, Refused, device_id_for, model_for

PERMIT_JOIN_MAX_S = 254
"""The longest permit-join Zigbee2MQTT grants in one request (Zigbee's own limit)."""
RESPONSE_WAIT_S = 5.0
"""How long the pairing command waits for Zigbee2MQTT's answer to a request."""


class Z2mTopics:
    def __init__(self, base: str) -> None:
        self.base = base

    def request(self, name: str) -> str:
        return f"{self.base}/bridge/request/{name}"

    def response(self, name: str) -> str:
        return f"{self.base}/bridge/response/{name}"

    @property
    def event(self) -> str:
        return f"{self.base}/bridge/event"


def permit_join(seconds: float, transaction: str) -> bytes:
    """Open (``seconds`` > 0, at most `PERMIT_JOIN_MAX_S`) or close permit-join, in a body
    both Zigbee2MQTT 2.x (``{"time": N}``, 0 closes) and 1.x (``{"value": …}``) read;
    Zigbee2MQTT echoes ``transaction`` in its response."""
    time_s = max(0, min(PERMIT_JOIN_MAX_S, math.ceil(seconds)))
    body = {"value": time_s > 0, "time": time_s, "transaction": transaction}
    return json.dumps(body).encode()


def remove_request(ieee: str, transaction: str, force: bool = False) -> bytes:
    """``force`` drops the device from Zigbee2MQTT's database even when it does not answer
    (a sleeping battery device often does not)."""
    return json.dumps({"id": ieee, "force": force, "transaction": transaction}).encode()


def response_to(payload: bytes, transaction: str) -> tuple[bool, str] | None:
    """(ok, error) when `payload` is Zigbee2MQTT's response to `transaction`, else None."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("transaction") != transaction:
        return None
    if data.get("status") == "ok":
        return True, ""
    return False, str(data.get("error") or "status not ok")[:200]


@dataclass(frozen=True)
class InterviewDecision:
    verdict: Literal["ask", "accept", "refuse", "ignore"]
    reason: str = ""
    model: ZigbeeModel | None = None


def decide_interview(
    notice: BridgeNotice,
    joined: set[str],
    handled: set[str],
    open_now: bool,
    accounts: BrokerAccounts,
    accept_all: bool,
) -> InterviewDecision:
    """What the pairing command does with one ``bridge/event``. `joined`: the addresses
    Zigbee2MQTT reported joining in this window (`notice` of a join is added here);
    `handled`: those already accepted or refused in it."""
    if not open_now:
        return InterviewDecision("ignore", "pairing window closed")
    if notice.kind == "device_joined" and notice.ieee is not None:
        joined.add(notice.ieee)
        return InterviewDecision("ignore", "joined; waiting for its interview")
    if notice.kind != "device_interview" or notice.ieee is None or notice.ieee in handled:
        return InterviewDecision("ignore")
    if notice.status == "failed":
        return InterviewDecision(
            "refuse", f"Zigbee2MQTT's interview of {notice.ieee} failed: reset it and pair again"
        )
    if notice.device is None:  # started
        return InterviewDecision("ignore")
    if notice.ieee not in joined:
        return InterviewDecision(
            "refuse",
            f"Zigbee device {notice.ieee} did not join during this window: remove it from"
            " Zigbee2MQTT, then pair it again",
        )
    model = model_for(notice.device)
    if isinstance(model, Refused):
        return InterviewDecision("refuse", model.message)
    existing = accounts.zigbee_device(device_id_for(notice.ieee))
    if existing is not None and existing.kind != model.kind:
        return InterviewDecision(
            "refuse", f"{notice.ieee} is paired as a {existing.kind}, now a {model.kind}"
        )
    return InterviewDecision("accept" if accept_all else "ask", model=model)
