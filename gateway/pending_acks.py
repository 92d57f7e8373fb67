"""State acks the broker has not taken yet, to be sent again once it is back.

An alarm's later states (accepted, arrived, resolved …) reach the elder's device only as
acks the hub publishes; the device does not ask again. An ack published while the broker
is away is kept here (and in the store, so a restart keeps it too) until a publish of it
succeeds. Only the newest ack per (device, alarm) is kept: a newer state supersedes an
older one, and an older ack is never sent after a newer one went out. Pure.
"""

from __future__ import annotations

import json

from carehub.mqtt_contract import Ack

Key = tuple[str, str]
"""(device id, alarm id, or ``seq:<n>`` for an ack without an alarm)."""


def _key(device_id: str, ack: Ack) -> Key:
    return (device_id, ack.alarm_id or f"seq:{ack.seq}")


class PendingAcks:
    def __init__(self) -> None:
        self._acks: dict[Key, tuple[str, Ack]] = {}

    def failed(self, device_id: str, ack: Ack) -> None:
        """Not published: keep it (replacing an older ack of the same alarm)."""
        key = _key(device_id, ack)
        self._acks.pop(key, None)  # re-inserted last: the order of sending is kept
        self._acks[key] = (device_id, ack)

    def sent(self, device_id: str, ack: Ack) -> bool:
        """Published: an older ack of the same alarm still waiting is superseded. True when
        one was waiting."""
        return self._acks.pop(_key(device_id, ack), None) is not None

    def items(self) -> list[tuple[str, Ack]]:
        """Oldest first."""
        return list(self._acks.values())

    def __bool__(self) -> bool:
        return bool(self._acks)

    def dumps(self) -> str:
        return json.dumps([[d, a.model_dump(mode="json")] for d, a in self._acks.values()])

    @classmethod
    def loads(cls, text: str | None) -> PendingAcks:
        pending = cls()
        for device_id, ack in json.loads(text or "[]"):
            pending.failed(device_id, Ack.model_validate(ack))
        return pending
