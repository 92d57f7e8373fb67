"""What the dispatch tests that drive the escalation worker by hand share: a notifier that
records the SMS it is asked to send, and a button press stored as a hub would upload it.
Each test module keeps its own directory and world; only these parts are the same."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.api_contract import AlarmUpload
from server.notifier import NotifierError
from server.schema import alarms
from server.store import HubIdentity, ServerStore


@dataclass
class RecordingNotifier:
    """Records each SMS as (to, body, ref); numbers in ``failing`` are refused."""

    phones: Mapping[str, str]  # member id -> phone, for `to` and `ref_to`
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    carried: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """ref -> the notification ids its message carried (for its status callback URL)."""
    while_sending: Callable[[str, tuple[str, ...]], Awaitable[None]] | None = None
    """Run with (ref, ids) before the send answers: a provider whose callbacks come first."""

    async def send_sms(self, to: str, body: str, notification_ids: Sequence[str] = ()) -> str:
        if to in self.failing:
            raise NotifierError("provider refused")
        ref = "SM" + uuid.uuid4().hex
        self.sent.append((to, body, ref))
        self.carried[ref] = tuple(notification_ids)
        if self.while_sending is not None:
            await self.while_sending(ref, tuple(notification_ids))
        return ref

    def to(self, member: str) -> list[str]:
        """The bodies sent to a member, oldest first."""
        return [body for to, body, _ in self.sent if to == self.phones[member]]

    def ref_to(self, member: str) -> str:
        """The provider reference of the last SMS sent to a member."""
        return [ref for to, _, ref in self.sent if to == self.phones[member]][-1]


async def press_button(
    store: ServerStore, hub: HubIdentity, now_ms: int, *, test: bool = False
) -> str:
    """Store a fresh button alarm from ``hub``'s ``btn-1``; return the server's alarm id."""
    upload = AlarmUpload(
        alarm_id=uuid.uuid4().hex,
        device_id="btn-1",
        kind=AlarmKind.BUTTON,
        severity=Severity.CRITICAL,
        seq=1,
        raised_at_ms=now_ms,
        test=test,
    )
    await store.store_alarm(hub, upload, now_ms)
    async with store.engine.connect() as conn:
        query = sa.select(alarms.c.id).where(alarms.c.hub_alarm_id == upload.alarm_id)
        return str((await conn.execute(query)).scalar())
